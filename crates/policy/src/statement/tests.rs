use super::*;
use crate::{Identity, IdentityKind, TaskState};
use taskgate_audit::Timestamp;

const CONFIG: &str = r#"
[roles]
admins = ["group:platform"]

[[identity.dev]]
subject = "copilot"
kind = "agent"
token_env = "T"

[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "orders"
read = { user = "ro" }
write = { user = "rw" }
admin = { user = "admin" }

[[policies]]
name = "agents"
who = ["kind:agent"]
connections = ["orders-db"]
access = ["read", "write", "admin"]
max_window = "30m"
approve = { when = ["write"], by = ["group:dba"] }

[[policies.statements]]
match = { class = ["ddl"] }
action = "review"
by = ["group:dba"]

[[policies.statements]]
match = { regex = "(?i)^\\s*(drop|truncate)\\b" }
action = "deny"

[[policies.statements]]
match = { tables = ["billing.*", "secrets"] }
action = "deny"

[[policies.statements]]
match = { command = ["DELETE", "create index"] }
action = "deny"

[[policies]]
name = "humans-only"
who = ["kind:human"]
connections = ["*"]
access = ["write"]
max_window = "30m"

[[policies.statements]]
match = { class = ["write"] }
action = "deny"
"#;

fn task(access: Access) -> Task {
    let t0 = Timestamp::from_micros(1_000_000);
    Task {
        id: "tsk_1".into(),
        name: "migrate-orders".into(),
        reason: None,
        reference: None,
        connection: "orders-db".into(),
        access,
        window_secs: 60,
        requester: Identity {
            claims: Default::default(),
            groups: vec![],
            issuer: "dev".into(),
            kind: IdentityKind::Agent,
            subject: "copilot".into(),
        },
        state: TaskState::Active,
        requested_at: t0,
        decide_by: None,
        starts_at: Some(t0),
        ends_at: None,
        approvers: vec!["group:dba".into()],
        approval: None,
        closing: None,
    }
}

fn class(class: Class, command: &str, read: &[&str], written: &[&str]) -> Classification {
    Classification {
        class,
        command: command.into(),
        tables_read: read.iter().map(|t| t.to_string()).collect(),
        tables_written: written.iter().map(|t| t.to_string()).collect(),
        lifts_read_only: false,
        opaque: Vec::new(),
        commands: vec![command.into()],
        error: None,
        statements: 1,
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Allow,
    Deny(&'static str),
    Review(&'static str),
    Invalid(&'static str),
}

fn check(access: Access, sql: &str, c: Classification, want: Want) {
    let config = crate::config::parse(CONFIG).unwrap();
    let policy = StatementPolicy::for_task(&config, &task(access)).unwrap();
    let got = policy.decide(sql, &c);
    let ok = match (&got, &want) {
        (StatementDecision::Allow, Want::Allow) => true,
        (StatementDecision::Deny { reason }, Want::Deny(part)) => reason.contains(part),
        (StatementDecision::Review { reason, by }, Want::Review(part)) => {
            reason.contains(part) && !by.is_empty()
        }
        (StatementDecision::Invalid { message }, Want::Invalid(part)) => message.contains(part),
        _ => false,
    };
    assert!(ok, "{access:?} {sql:?}: got {got:?}, want {want:?}");
}

#[test]
fn decisions_table() {
    use Access::{Admin, Read, Write};
    use Class as C;
    let cases: Vec<(Access, &str, Classification, Want)> = vec![
        (
            Read,
            "select 1 from orders",
            class(C::Read, "SELECT", &["orders"], &[]),
            Want::Allow,
        ),
        (Read, "begin", class(C::Tcl, "BEGIN", &[], &[]), Want::Allow),
        (
            Read,
            "set search_path = x",
            class(C::Utility, "SET", &[], &[]),
            Want::Allow,
        ),
        (
            Read,
            "insert into orders values (1)",
            class(C::Write, "INSERT", &[], &["orders"]),
            Want::Deny("read grant does not allow write"),
        ),
        (
            Read,
            "create table t ()",
            class(C::Ddl, "CREATE TABLE", &[], &["t"]),
            Want::Deny("read grant does not allow ddl"),
        ),
        (
            Read,
            "grant all on t to x",
            class(C::Dcl, "GRANT", &[], &[]),
            Want::Deny("read grant does not allow dcl"),
        ),
        (
            Read,
            "do $$ begin end $$",
            class(C::Unknown, "DO", &[], &[]),
            Want::Review("cannot inspect"),
        ),
        (
            Write,
            "insert into orders values (1)",
            class(C::Write, "INSERT", &[], &["orders"]),
            Want::Allow,
        ),
        (
            Write,
            "alter table orders add column note text",
            class(C::Ddl, "ALTER TABLE", &[], &["orders"]),
            Want::Review("agents.statements[0]"),
        ),
        (
            Write,
            "grant all on t to x",
            class(C::Dcl, "GRANT", &[], &[]),
            Want::Deny("need an admin grant"),
        ),
        (
            Write,
            "  DROP TABLE orders",
            class(C::Ddl, "DROP TABLE", &[], &["orders"]),
            Want::Deny("agents.statements[1]"),
        ),
        (
            Write,
            "truncate orders",
            class(C::Write, "TRUNCATE", &[], &["orders"]),
            Want::Deny("statements[1]"),
        ),
        (
            Write,
            "select * from billing.invoices",
            class(C::Read, "SELECT", &["billing.invoices"], &[]),
            Want::Deny("agents.statements[2]"),
        ),
        (
            Write,
            "select * from public.secrets",
            class(C::Read, "SELECT", &["public.secrets"], &[]),
            Want::Deny("agents.statements[2]"),
        ),
        (
            Write,
            "select * from secretsx",
            class(C::Read, "SELECT", &["secretsx"], &[]),
            Want::Allow,
        ),
        (
            Write,
            "select * from \"BILLING\".x",
            class(C::Read, "SELECT", &["BILLING.x"], &[]),
            Want::Deny("statements[2]"),
        ),
        (
            Write,
            "garbage",
            Classification {
                error: Some("syntax error".into()),
                ..class(C::Unknown, "UNKNOWN", &[], &[])
            },
            // Whatever the grant: refused as the server would, never run.
            Want::Invalid("syntax error"),
        ),
        (
            Admin,
            "grant all on t to x",
            class(C::Dcl, "GRANT", &[], &[]),
            Want::Allow,
        ),
        (
            Admin,
            "do $$ begin end $$",
            class(C::Unknown, "DO", &[], &[]),
            Want::Allow,
        ),
        (
            Admin,
            "drop table orders",
            class(C::Ddl, "DROP TABLE", &[], &["orders"]),
            Want::Deny("statements[1]"),
        ),
    ];
    for (access, sql, c, want) in cases {
        check(access, sql, c, want);
    }
}

#[test]
fn read_grants_refuse_lifting_read_only() {
    let c = Classification {
        lifts_read_only: true,
        ..class(Class::Utility, "SET", &[], &[])
    };
    check(
        Access::Read,
        "set default_transaction_read_only = off",
        c.clone(),
        Want::Deny("lift the read-only session"),
    );
    check(
        Access::Write,
        "set default_transaction_read_only = off",
        c,
        Want::Allow,
    );
}

#[test]
fn policies_that_do_not_cover_the_task_add_no_rules() {
    // "humans-only" denies every write, but the task's requester is an agent.
    check(
        Access::Write,
        "update orders set x = 1",
        class(Class::Write, "UPDATE", &[], &["orders"]),
        Want::Allow,
    );
}

#[test]
fn table_patterns() {
    for (pattern, table, want) in [
        ("orders", "orders", true),
        ("orders", "shop.orders", true),
        ("Orders", "ORDERS", true),
        // Unqualified, it may be in any schema the search_path names.
        ("shop.orders", "orders", true),
        ("shop.orders", "shop.orders", true),
        ("shop.orders", "s2.orders", false),
        ("shop.orders", "shop.order_lines", false),
        ("shop.*", "shop.orders", true),
        ("shop.*", "orders", false),
        ("shop.*", "s2.orders", false),
        ("*", "anything", true),
        ("orders", "orders_archive", false),
    ] {
        assert_eq!(table_matches(pattern, table), want, "{pattern} vs {table}");
    }
}

#[test]
fn a_rule_sees_the_text_without_its_comments() {
    // A rule written for the text's start, passed through a leading comment.
    check(
        Access::Write,
        "/* x */ TRUNCATE orders",
        class(Class::Write, "TRUNCATE", &[], &["orders"]),
        Want::Deny("agents.statements[1]"),
    );
}

#[test]
fn opaque_code_matches_every_table_rule() {
    // Its tables are unknown, so the rule on billing.* and secrets applies
    // (deny beats the review an opaque call needs), whatever the grant.
    let mut c = class(Class::Write, "SELECT", &[], &[]);
    c.opaque = vec!["function touch_customers()".into()];
    for access in [Access::Read, Access::Write, Access::Admin] {
        check(
            access,
            "SELECT touch_customers()",
            c.clone(),
            Want::Deny("agents.statements[2]"),
        );
    }
}

#[test]
fn text_that_reads_two_ways_is_denied() {
    check(
        Access::Write,
        "SELECT 'x\\' AS a, ' ; UPDATE t SET a = 1; --' AS b",
        class(Class::Read, "SELECT", &[], &[]),
        Want::Deny("standard_conforming_strings"),
    );
}

#[test]
fn a_review_no_one_but_the_requester_could_decide_is_refused_at_once() {
    let config = crate::config::parse(CONFIG).unwrap();
    for approvers in [vec![], vec!["subject:copilot".to_owned()]] {
        let mut t = task(Access::Write);
        t.approvers = approvers;
        let policy = StatementPolicy::for_task(&config, &t).unwrap();
        let got = policy.decide("DO $$ BEGIN END $$", &class(Class::Unknown, "DO", &[], &[]));
        assert!(
            matches!(&got, StatementDecision::Deny { reason } if reason.contains("no one other than the requester")),
            "{got:?}"
        );
    }
}

#[test]
fn command_rules_match_what_runs_by_the_parse_tree() {
    let config = crate::config::parse(CONFIG).unwrap();
    let policy = StatementPolicy::for_task(&config, &task(Access::Write)).unwrap();
    let decide = |sql: &str| policy.decide(sql, &taskgate_sqlclass::classify(sql));
    for sql in [
        "DELETE FROM orders WHERE id = 1",
        "delete/**/from orders",
        "WITH d AS (DELETE FROM orders RETURNING id) SELECT * FROM d",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "COPY (DELETE FROM orders RETURNING id) TO STDOUT",
        "CREATE INDEX i ON orders (id)",
        "PREPARE p AS DELETE FROM orders",
    ] {
        assert!(
            matches!(decide(sql), StatementDecision::Deny { ref reason } if reason.contains("statements[3]")),
            "{sql}: {:?}",
            decide(sql)
        );
    }
    for sql in [
        "SELECT 'DELETE FROM orders'",
        "EXPLAIN DELETE FROM orders",
        "SELECT 1 /* DELETE */",
    ] {
        assert_eq!(decide(sql), StatementDecision::Allow, "{sql}");
    }
}

#[test]
fn unknown_command_patterns_are_refused_by_the_config() {
    let bad = CONFIG.replace("\"create index\"", "\"CREAT INDEX\"");
    let err = format!("{:?}", crate::config::parse(&bad).unwrap_err());
    assert!(err.contains("statements[3].match.command[1]"), "{err}");
    assert!(err.contains("CREAT INDEX"), "{err}");
}
