//! The differential adversarial suite: pipelined message sequences from a
//! seeded generator (reused names, errors mid-batch, portals across
//! transactions, SQL-level PREPARE / DECLARE / CLOSE, settings changes,
//! comments, dollar quotes, backslashes, multi-statement strings) go through
//! the gateway to a cluster that logs every statement. Then, session by
//! session, every statement the database logged must have a
//! `command.started` before it, in order, with exactly that text, the class
//! PostgreSQL's grammar gives that text, and at least the tables it names.
//! Nothing the gateway denied or held can have run, since everything that
//! ran is matched to a start.
//!
//! `TASKGATE_DIFF_SEQUENCES` and `TASKGATE_DIFF_SEED` run it longer or
//! elsewhere (bench/differential.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::TestGateway;
use common::cluster::TestCluster;
use common::raw::{Cut, RawPg, frontend as fe};
use serde_json::Value;
use taskgate_sqlclass::Strings;

/// SplitMix64: a small deterministic generator, so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Statements any grant here may send: reads, writes, errors, refusals
/// (the cluster's rules deny DROP and writes to customers), transaction
/// control, SQL-level names, text that reads differently without
/// standard_conforming_strings and the settings that turn it off and on,
/// and a client encoding in which the UTF-8 bytes sent read as other
/// characters.
const COMMON: &[&str] = &[
    "SELECT 1",
    "SELECT count(*) FROM orders",
    "SELECT name FROM customers WHERE id = 1",
    "SELECT 'a;b' AS x",
    "SELECT $$x;y$$ AS d",
    "SELECT $t$ ' ; $t$ AS t",
    "/* c */ SELECT 2",
    "SELECT 3 -- trailing comment",
    "SELECT E'it\\'s' AS e",
    "SELECT 'x\\' AS a, ' ; UPDATE customers SET name = $$pwned$$ WHERE id = 1; --' AS b",
    "VALUES (1), (2)",
    "SELECT 1/0",
    "SELECT * FROM no_such_table",
    "SELEC 1",
    "UPDATE orders SET qty = qty + 1 WHERE id = 1",
    "INSERT INTO orders (item) VALUES ('gen')",
    "DELETE FROM orders WHERE item = 'gen'",
    "UPDATE customers SET name = name",
    "DROP TABLE orders",
    "/* x */ DROP TABLE orders",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT sp",
    "ROLLBACK TO SAVEPOINT sp",
    "PREPARE q AS SELECT name FROM customers",
    "DEALLOCATE q",
    "DEALLOCATE ALL",
    "DECLARE cur CURSOR WITH HOLD FOR SELECT name FROM customers",
    "DECLARE p1 CURSOR WITH HOLD FOR SELECT item FROM orders",
    "CLOSE cur",
    "CLOSE ALL",
    "FETCH 1 FROM cur",
    "SET search_path = public",
    "SELECT lo_create(0)",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings = on",
    "SET client_encoding = 'LATIN1'",
    "RESET client_encoding",
    "SELECT 'naïve ; さ' AS n",
];

/// Only under the admin grant: what a write grant would hold for review
/// (code the gateway cannot see into), and an encoding that makes the
/// gateway end the session.
const ADMIN_ONLY: &[&str] = &[
    "EXECUTE q",
    "DISCARD ALL",
    "DO $$ BEGIN PERFORM 1; END $$",
    "SET client_encoding = 'SJIS'",
];

const STATEMENT_NAMES: &[&str] = &["", "s1", "s2", "q"];
const PORTAL_NAMES: &[&str] = &["", "p1", "cur"];

/// One pipelined write, ending with Sync and an empty Query, whose
/// EmptyQueryResponse marks the end of the answers (how many
/// ReadyForQuery come before depends on which errors the server meets:
/// after one it discards even simple queries up to Sync).
fn sequence(rng: &mut Rng, pool: &[&str]) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut shown = Vec::new();
    for _ in 0..1 + rng.below(12) {
        match rng.below(10) {
            0 | 1 => {
                let n = 1 + rng.below(3);
                let parts: Vec<&str> = (0..n).map(|_| rng.pick(pool)).collect();
                let sql = parts.join("; ");
                out.extend(fe::query(&sql));
                shown.push(format!("Query {sql:?}"));
            }
            2 | 3 => {
                let (name, sql) = (rng.pick(STATEMENT_NAMES), rng.pick(pool));
                out.extend(fe::parse(name, sql, &[]));
                shown.push(format!("Parse {name:?} {sql:?}"));
            }
            4 | 5 => {
                let (portal, name) = (rng.pick(PORTAL_NAMES), rng.pick(STATEMENT_NAMES));
                out.extend(fe::bind(portal, name, &[]));
                shown.push(format!("Bind {portal:?} {name:?}"));
            }
            6 => {
                let (portal, rows) = (rng.pick(PORTAL_NAMES), rng.pick(&[0, 0, 1]));
                out.extend(fe::execute(portal, rows));
                shown.push(format!("Execute {portal:?} {rows}"));
            }
            7 => {
                let (kind, target) = (rng.below(2), rng.pick(b"SP"));
                let name = if target == b'S' {
                    rng.pick(STATEMENT_NAMES)
                } else {
                    rng.pick(PORTAL_NAMES)
                };
                if kind == 0 {
                    out.extend(fe::describe(target, name));
                    shown.push(format!("Describe {} {name:?}", target as char));
                } else {
                    out.extend(fe::close(target, name));
                    shown.push(format!("Close {} {name:?}", target as char));
                }
            }
            _ => {
                out.extend(fe::sync());
                shown.push("Sync".to_owned());
            }
        }
    }
    out.extend(fe::sync());
    out.extend(fe::query(""));
    shown.push("Sync".to_owned());
    shown.push("Query \"\"".to_owned());
    (out, shown)
}

/// Reads the answers to one sequence: up to the ReadyForQuery after the
/// closing empty query's EmptyQueryResponse.
fn read_sequence(pg: &mut RawPg) -> (Vec<common::raw::Answer>, Option<Cut>) {
    let mut all = Vec::new();
    loop {
        let (answers, cut) = pg.answers(1);
        all.extend(answers);
        if cut.is_some() {
            return (all, cut);
        }
        let n = all.len();
        if n >= 2 && all[n - 2].tag == 'I' {
            return (all, None);
        }
    }
}

/// What the database logged one backend executing, in order.
#[derive(Debug)]
struct Ran {
    simple: bool,
    text: String,
}

impl Ran {
    /// The statements it ran: a simple query's as the parser splits it,
    /// with plain strings read as `strings`.
    fn statements_as(&self, strings: Strings) -> Vec<&str> {
        if self.simple {
            taskgate_sqlclass::split_as(&self.text, strings)
        } else {
            vec![self.text.as_str()]
        }
    }
}

/// Checks every gateway session the database logged against the record
/// (see `check_session`; each session's first statement is its marker)
/// and hands each statement that ran to `ran`. Returns how many
/// statements and sessions were checked.
fn check_database_log(
    gw: &TestGateway,
    cluster: &TestCluster,
    mut ran: impl FnMut(&str),
) -> (usize, u64) {
    let started = gw.events_of("command.started");
    let mut by_session: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in &started {
        let s = e["session"].as_str().unwrap_or_default().to_owned();
        by_session.entry(s).or_default().push(e);
    }
    let (mut checked, mut sessions) = (0, 0);
    for logged in database_log(&cluster.log()).values() {
        let Some(first) = logged.first() else {
            continue;
        };
        let marker = first.text.as_str();
        let session = started
            .iter()
            .find(|e| e["payload"]["sql"] == marker)
            .and_then(|e| e["session"].as_str())
            .unwrap_or_else(|| panic!("no session recorded the marker {marker:?}"));
        checked += check_session(marker, logged, &by_session[session], &mut ran);
        sessions += 1;
    }
    (checked, sessions)
}

/// The database's log, by backend pid: `statement:` (simple) and
/// `execute ...:` (extended) records of the gateway's sessions.
fn database_log(log: &str) -> HashMap<String, Vec<Ran>> {
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        let starts = line.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && line.contains(" [")
            && line.contains("] app=");
        if starts {
            records.push(line.to_owned());
        } else if let Some(last) = records.last_mut() {
            // The server's stderr log starts each continuation line of a
            // record with a tab.
            last.push('\n');
            last.push_str(line.strip_prefix('\t').unwrap_or(line));
        }
    }
    let mut by_pid: HashMap<String, Vec<Ran>> = HashMap::new();
    for record in records {
        let Some((head, rest)) = record.split_once("] app=") else {
            continue;
        };
        if !rest.starts_with("taskgate/tsk_") {
            continue;
        }
        let pid = head.rsplit('[').next().unwrap_or_default().to_owned();
        let Some((_, message)) = rest.split_once(" LOG:  ") else {
            continue;
        };
        let ran = if let Some(text) = message.strip_prefix("statement: ") {
            Ran {
                simple: true,
                text: text.to_owned(),
            }
        } else if message.starts_with("execute ") {
            let Some((_, text)) = message.split_once(": ") else {
                continue;
            };
            Ran {
                simple: false,
                text: text.to_owned(),
            }
        } else {
            continue;
        };
        by_pid.entry(pid).or_default().push(ran);
    }
    by_pid
}

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every statement a backend ran has a start before it, in order, with the
/// same text and the class and tables the grammar gives that text.
/// Returns how many statements were checked.
fn check_session(
    marker: &str,
    ran: &[Ran],
    started: &[&Value],
    mut each: impl FnMut(&str),
) -> usize {
    let mut next = 0;
    let mut checked = 0;
    for r in ran {
        let protocol = if r.simple { "simple" } else { "extended" };
        // The log does not say how the server read plain strings (a
        // statement before may have turned standard_conforming_strings
        // off): the record must match one reading, whose classes then
        // hold. (That the reading was the server's shows in what the
        // statements did: see the customers check of the soup test.)
        let readings = [Strings::Standard, Strings::Backslash].map(|strings| {
            let parts = r.statements_as(strings);
            let found = matches_in_order(&parts, protocol, started, next);
            (strings, parts, found)
        });
        let chosen = readings.iter().find(|(_, _, found)| found.is_some());
        let Some((reading, parts, Some(found))) = chosen else {
            let part = readings[0].1.first().copied().unwrap_or_default();
            let all: Vec<String> = started
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["payload"]["command"], e["payload"]["protocol"], e["payload"]["sql"]
                    )
                })
                .collect();
            let ran: Vec<String> = ran
                .iter()
                .map(|r| format!("{} {}", r.simple, r.text))
                .collect();
            std::fs::write(
                "/tmp/differential-failure.txt",
                format!("{all:#?}\n{ran:#?}"),
            )
            .ok();
            panic!(
                "{marker}: the database ran {part:?} ({protocol}) with no command.started for it after the previous match (start {next} of {}); see /tmp/differential-failure.txt",
                started.len()
            );
        };
        for (part, &at) in parts.iter().zip(found) {
            let event = started[at];
            next = at + 1;
            let read = taskgate_sqlclass::as_standard(part, *reading);
            each(&read);
            let truth = taskgate_sqlclass::classify(&read);
            let p = &event["payload"];
            if let Some(sent) = p["sent_as"].as_str() {
                assert_sent_as_asked(marker, event, sent, *reading);
                checked += 1;
                continue;
            }
            if truth.command == "EXECUTE" && p["command_type"] == "EXECUTE" {
                // Recorded as the statement it runs, which the text does
                // not show (tests/bypass.rs checks those).
                checked += 1;
                continue;
            }
            // A client's RESET of application_name sent on its own is
            // the ordinary setting it is once the gateway keeps the tag.
            let alone =
                taskgate_sqlclass::split_as(p["sql"].as_str().unwrap_or_default(), *reading).len()
                    <= 1;
            let class = if alone && taskgate_sqlclass::application_name_set(&read).is_some() {
                "utility"
            } else {
                truth.class.as_str()
            };
            assert_eq!(p["class"], class, "{marker}: {part:?}");
            // At least as wide: views and names in several schemas add to
            // what the text names, each named relation by its catalog
            // identity (`orders` recorded as `public.orders`).
            for (recorded, named) in [
                (strings(&p["tables_read"]), &truth.tables_read),
                (strings(&p["tables_written"]), &truth.tables_written),
            ] {
                assert!(
                    named
                        .iter()
                        .all(|t| recorded.iter().any(|r| resolves_to(t, r))),
                    "{marker}: {part:?} recorded {recorded:?}, names {named:?}"
                );
            }
            checked += 1;
        }
    }
    checked
}

/// A `SET application_name` the gateway sent in the client's statement's
/// place sets what the client asked for behind the task's tag, in the same
/// scope, and is recorded as the setting it is.
fn assert_sent_as_asked(marker: &str, event: &Value, sent: &str, reading: Strings) {
    use taskgate_sqlclass::{ApplicationName, application_name_set};
    let p = &event["payload"];
    let client = p["sql"].as_str().unwrap();
    let asked = taskgate_sqlclass::split_as(client, reading)
        .first()
        .and_then(|s| application_name_set(&taskgate_sqlclass::as_standard(s, reading)));
    let ran = application_name_set(sent);
    let (
        Some(ApplicationName::Set {
            value: asked,
            local: asked_local,
        }),
        Some(ApplicationName::Set {
            value: ran,
            local: ran_local,
        }),
    ) = (asked, ran)
    else {
        panic!("{marker}: {client:?} was sent as {sent:?}");
    };
    let tag = format!("taskgate/{}", event["task"].as_str().unwrap_or_default());
    let want = if asked.is_empty() {
        tag
    } else {
        format!("{tag} {asked}")
    };
    assert_eq!(ran, want, "{marker}: {client:?} sent as {sent:?}");
    assert_eq!(asked_local, ran_local, "{marker}: {client:?}");
    assert_eq!(p["class"], "utility", "{marker}: {client:?}");
}

/// Where each of `parts` was recorded started, in order, from `next` on.
fn matches_in_order(
    parts: &[&str],
    protocol: &str,
    started: &[&Value],
    mut next: usize,
) -> Option<Vec<usize>> {
    let mut at = Vec::with_capacity(parts.len());
    for part in parts {
        // A SET application_name runs as what the gateway sent for it.
        let offset = started[next..].iter().position(|e| {
            let p = &e["payload"];
            p["protocol"] == protocol && (p["sql"] == *part || p["sent_as"] == *part)
        })?;
        at.push(next + offset);
        next += offset + 1;
    }
    Some(at)
}

/// Could a relation named `named` in the text be recorded as `recorded`?
/// The same last part, and the same schema when the text gave one.
fn resolves_to(named: &str, recorded: &str) -> bool {
    let named = taskgate_sqlclass::name_parts(named);
    let recorded = taskgate_sqlclass::name_parts(recorded);
    match (named.as_slice(), recorded.as_slice()) {
        ([.., schema, bare], [rs, rb]) => schema == rs && bare == rb,
        ([bare], [.., rb]) => bare == rb,
        _ => named == recorded,
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn everything_the_database_ran_was_recorded_first_with_its_own_text() {
    let sequences = env_number("TASKGATE_DIFF_SEQUENCES", 3000);
    let seed = env_number("TASKGATE_DIFF_SEED", 16);
    let per_session = 40;
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full("review_hold = \"1s\"", &cluster.gateway_config());
    let admin = gw.active_task("shop", "admin", "30m");
    let write = gw.active_task("shop", "write", "30m");
    let admin_pool: Vec<&str> = COMMON.iter().chain(ADMIN_ONLY).copied().collect();
    let mut rng = Rng(seed);
    // TASKGATE_DIFF_TRACE=FILE writes every sequence and its answers there.
    let mut trace = std::env::var("TASKGATE_DIFF_TRACE")
        .ok()
        .and_then(|path| std::fs::File::create(path).ok());
    let (mut sent, mut session, mut cut_short) = (0u64, 0u64, 0u64);
    while sent < sequences {
        session += 1;
        let as_admin = session % 2 == 1;
        let ((task, token), pool) = if as_admin {
            (&admin, &admin_pool[..])
        } else {
            (&write, COMMON)
        };
        let mut pg = RawPg::connect(gw.postgres, task, token, "shop");
        let marker = format!("SELECT 'session {session}'");
        pg.send(&fe::query(&marker));
        let (_, cut) = pg.answers(1);
        assert_eq!(cut, None, "session {session}: the marker got no answer");
        for _ in 0..per_session {
            if sent >= sequences {
                break;
            }
            sent += 1;
            let (bytes, shown) = sequence(&mut rng, pool);
            if !pg.try_send(&bytes) {
                break;
            }
            let (answers, cut) = read_sequence(&mut pg);
            if let Some(trace) = trace.as_mut() {
                use std::io::Write;
                let tags: String = answers.iter().map(|a| a.tag).collect();
                let errors: Vec<_> = answers.iter().filter_map(|a| a.sqlstate.clone()).collect();
                let _ = writeln!(
                    trace,
                    "session {session} sequence {sent}: {shown:?} -> {tags} {errors:?}"
                );
            }
            match cut {
                None => {}
                Some(Cut::Closed) => {
                    // The gateway ends a session whose server took an
                    // encoding it cannot read.
                    cut_short += 1;
                    break;
                }
                Some(Cut::TimedOut) => {
                    panic!(
                        "seed {seed}, sequence {sent}: no answer for 10 s after {answers:#?}\nsent: {shown:#?}"
                    )
                }
            }
        }
        drop(pg);
    }
    let (checked, sessions_checked) = check_database_log(&gw, &cluster, |_| {});
    // What the statements did shows the reading the server took: the
    // write hidden behind a backslash string never ran.
    assert_eq!(
        cluster.psql(
            "shop",
            "SELECT count(*) FROM customers WHERE name = 'pwned'"
        ),
        "0"
    );
    let denied = gw.events_of("command.denied").len();
    println!(
        "differential: seed {seed}: {sent} sequences in {session} sessions ({cut_short} ended by the gateway); {checked} statements the database ran, each recorded first with its text, class and tables; {denied} refused, none in the database's log"
    );
    assert_eq!(
        sessions_checked, session,
        "a session left no trace in the database's log"
    );
    assert!(
        checked > sequences as usize / 2,
        "too little ran to check: {checked}"
    );
    assert!(denied > 0);
}

/// Pieces of token soup: what can stand before a statement, inside it and
/// after it, each a way the text can look unlike what the server runs.
const PREFIXES: &[&str] = &[
    "",
    "",
    ";",
    " ; ; ",
    "/* c */ ",
    "/* a /* nested; */ b */",
    "-- line; comment\n",
    "\t\n",
    "/**/;",
];
const LITERALS: &[&str] = &[
    "1",
    "'a;b'",
    "E'\\''",
    "E'x\\\\'",
    "$$;$$",
    "$t$ ' ; $t$",
    "U&'\\0061'",
    "U&'!0061' UESCAPE '!'",
    "'さ'",
    "'é;'",
    "'a'\n'b'",
    "\"x;\"",
    "'x\\' AS a, ' ; DROP TABLE orders; --'",
];
const RELATIONS: &[&str] = &[
    "orders",
    "public.orders",
    "shop.public.orders",
    "\"orders\"",
    "\"shop\".\"public\".\"orders\"",
    "ONLY orders",
    "customers",
    "public.customers",
    "shop.public.customers",
    "\"customers\"",
    "other.public.orders",
    "no_such_table",
];
const TEMPLATES: &[&str] = &[
    "SELECT {lit}",
    "SELECT {lit} AS v FROM {rel}",
    "UPDATE {rel} SET id = id WHERE id < 0",
    "DELETE FROM {rel} WHERE id < 0",
    "INSERT INTO {rel} (id) SELECT id FROM {rel} WHERE false",
    "WITH d AS (DELETE FROM {rel} WHERE id < 0 RETURNING id) SELECT count(*) FROM d",
    "DROP TABLE {rel}",
    "drop/**/table {rel}",
    "EXPLAIN SELECT * FROM {rel}",
    "SET search_path = public",
    "SELECT set_config('search_path', 'public', false)",
    "SHOW client_encoding",
    "COPY (SELECT {lit}) TO STDOUT",
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings = on",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SET client_encoding = 'LATIN1'",
    "RESET client_encoding",
    "SET application_name = {lit}",
    "SET LOCAL application_name TO {lit}",
    "RESET application_name",
];
const SUFFIXES: &[&str] = &["", "", ";", " -- tail", " /* tail; */", "; ;"];

fn soup(rng: &mut Rng) -> String {
    let template = rng.pick(TEMPLATES);
    let mut out = String::from(rng.pick(PREFIXES));
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let (piece, after) = if rest[at..].starts_with("{lit}") {
            (rng.pick(LITERALS), &rest[at + 5..])
        } else {
            (rng.pick(RELATIONS), &rest[at + 5..])
        };
        out.push_str(piece);
        rest = after;
    }
    out.push_str(rest);
    out.push_str(rng.pick(SUFFIXES));
    out
}

/// What the cluster's rules must refuse: `^\s*drop\b` on a statement's
/// text without comments, and writes to customers in any schema.
fn rules_refuse(part: &str) -> bool {
    let text = taskgate_sqlclass::without_comments(part);
    let truth = taskgate_sqlclass::classify(part);
    let drops = text.trim_start().to_ascii_lowercase().starts_with("drop")
        && !text
            .trim_start()
            .as_bytes()
            .get(4)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let writes_customers = truth.class == taskgate_sqlclass::Class::Write
        && truth.tables_written.iter().any(|t| {
            taskgate_sqlclass::name_parts(t).last().map(String::as_str) == Some("customers")
        });
    drops || writes_customers
}

/// The generator that hunts for the difference: seeded token soups
/// (comments of each kind and nesting, quotes of each kind, backslashes in
/// `E''`, dollar tags, `U&` escapes, semicolons and empty statements,
/// multibyte characters, two- and three-part names, settings statements)
/// sent through the gateway in simple and extended protocol, pipelined.
/// Every statement the database logged must have been recorded first with
/// its text, class and tables, and none may be one the rules refuse.
/// `TASKGATE_SOUP_CASES` and `TASKGATE_SOUP_SEED` run it longer
/// (bench/differential.sh).
#[test]
fn token_soups_run_only_as_recorded_and_as_the_rules_allow() {
    let cases = env_number("TASKGATE_SOUP_CASES", 2000);
    let seed = env_number("TASKGATE_SOUP_SEED", 27);
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full("review_hold = \"1s\"", &cluster.gateway_config());
    let write = gw.active_task("shop", "write", "30m");
    let mut rng = Rng(seed);
    let (mut sent, mut session) = (0u64, 0u64);
    while sent < cases {
        session += 1;
        let (task, token) = &write;
        let mut pg = RawPg::connect(gw.postgres, task, token, "shop");
        let marker = format!("SELECT 'soup session {session}'");
        pg.send(&fe::query(&marker));
        let (_, cut) = pg.answers(1);
        assert_eq!(cut, None, "session {session}: the marker got no answer");
        for _ in 0..50 {
            if sent >= cases {
                break;
            }
            let mut bytes = Vec::new();
            let mut shown = Vec::new();
            for _ in 0..1 + rng.below(4) {
                sent += 1;
                if rng.below(2) == 0 {
                    let n = 1 + rng.below(3);
                    let sql: Vec<String> = (0..n).map(|_| soup(&mut rng)).collect();
                    let sql = sql.join("; ");
                    bytes.extend(fe::query(&sql));
                    shown.push(format!("Query {sql:?}"));
                } else {
                    let sql = soup(&mut rng);
                    bytes.extend(fe::parse("", &sql, &[]));
                    bytes.extend(fe::bind("", "", &[]));
                    bytes.extend(fe::execute("", 0));
                    bytes.extend(fe::sync());
                    shown.push(format!("Extended {sql:?}"));
                }
            }
            bytes.extend(fe::sync());
            bytes.extend(fe::query(""));
            if !pg.try_send(&bytes) {
                break;
            }
            let (answers, cut) = read_sequence(&mut pg);
            assert!(
                cut.is_none(),
                "seed {seed}, session {session}: cut {cut:?} after {answers:?}\nsent: {shown:#?}"
            );
        }
    }
    let (checked, sessions_checked) = check_database_log(&gw, &cluster, |part| {
        assert!(
            !rules_refuse(part),
            "seed {seed}: the database ran {part:?}, which the rules refuse"
        );
    });
    let denied = gw.events_of("command.denied").len();
    let sent_as = gw
        .events_of("command.started")
        .iter()
        .filter(|e| e["payload"]["sent_as"].is_string())
        .count();
    println!(
        "token soups: seed {seed}: {sent} statements in {session} sessions; {checked} the database ran, each recorded first and allowed by the rules ({sent_as} a SET application_name sent with the task's tag); {denied} refused, none in the database's log"
    );
    assert!(sent_as > 0, "no SET application_name was sent with the tag");
    assert_eq!(
        sessions_checked, session,
        "a session left no trace in the database's log"
    );
    assert!(denied > 0 && checked > 0);
}
