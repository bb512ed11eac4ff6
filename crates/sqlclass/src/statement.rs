//! The class and command of one top-level statement node, from its type and
//! its own fields only (not what is nested in it: `classify` adds that).
//! This is the table in the crate docs, in code. Anything not listed here is
//! `Unknown`: a new statement type never silently becomes a read. The DDL
//! statement types live in `ddl`.

use std::borrow::Cow;

use pg_query::NodeEnum as N;
use pg_query::protobuf::{self as pb, ObjectType as O};

use crate::Class::{self, *};
use crate::lexer::{Kind, Lexer, Step};
use crate::names::{self, is_read_only_param, is_role_param, object};

/// What the node says about itself.
pub(crate) struct Base {
    pub class: Class,
    pub command: Cow<'static, str>,
    pub lifts: bool,
    /// Relations named by a name list (DROP, COMMENT ON): written.
    pub named: Vec<String>,
    /// Targets reached through this parent node are only read
    /// (COPY ... TO, ANALYZE).
    pub demote: Option<&'static str>,
    /// The statement's RangeVars name a composite type, not tables.
    pub no_tables: bool,
}

pub(crate) fn base(class: Class, command: impl Into<Cow<'static, str>>) -> Base {
    Base {
        class,
        command: command.into(),
        lifts: false,
        named: Vec::new(),
        demote: None,
        no_tables: false,
    }
}

pub(crate) fn alter(raw: i32) -> String {
    format!("ALTER {}", object(raw))
}

/// Does a `transaction_read_only` option (BEGIN / SET TRANSACTION) say READ WRITE?
fn read_write(options: &[pb::Node]) -> bool {
    options.iter().any(|o| match &o.node {
        Some(N::DefElem(d)) if d.defname == "transaction_read_only" => {
            // READ ONLY is the integer 1; anything else is treated as READ WRITE.
            !matches!(d.arg.as_deref().and_then(|a| a.node.as_ref()),
                Some(N::AConst(c)) if matches!(c.val, Some(pb::a_const::Val::Ival(pb::Integer { ival: 1 }))))
        }
        _ => false,
    })
}

/// Would this SET/RESET lift read-only (the params, RESET ALL, READ WRITE)?
pub(crate) fn set_lifts(s: &pb::VariableSetStmt) -> bool {
    let kind = pb::VariableSetKind::try_from(s.kind).unwrap_or(pb::VariableSetKind::Undefined);
    // RESET ALL (and DISCARD ALL) returns every setting to the value the
    // session started with, and the gateway starts read-only sessions
    // with default_transaction_read_only in the startup packet: they stay
    // read-only. Resetting the setting by name is refused all the same.
    is_read_only_param(&s.name)
        || is_role_param(&s.name)
        || (kind == pb::VariableSetKind::VarSetMulti && read_write(&s.args))
}

fn variable_set(s: &pb::VariableSetStmt) -> Base {
    let kind = pb::VariableSetKind::try_from(s.kind).unwrap_or(pb::VariableSetKind::Undefined);
    let reset = matches!(kind, pb::VariableSetKind::VarReset | pb::VariableSetKind::VarResetAll);
    let mut b = if is_role_param(&s.name) || names::is_gateway_param(&s.name) {
        base(Dcl, if reset { "RESET" } else { "SET" })
    } else if kind == pb::VariableSetKind::VarSetMulti && s.name.starts_with("TRANSACTION") {
        base(Tcl, "SET TRANSACTION")
    } else {
        base(Utility, if reset { "RESET" } else { "SET" })
    };
    b.lifts = set_lifts(s);
    b
}

/// The relation named by a DROP / COMMENT name list, if it names one.
pub(crate) fn named_relation(objtype: i32, obj: Option<&pb::Node>) -> Option<String> {
    let Some(N::List(list)) = obj.and_then(|n| n.node.as_ref()) else {
        return None;
    };
    let parts: Vec<&str> = list
        .items
        .iter()
        .filter_map(|i| match &i.node {
            Some(N::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    let parts = if names::is_relation(objtype) {
        &parts[..]
    } else if names::is_on_relation(objtype) {
        parts.split_last().map(|(_, rest)| rest).unwrap_or_default()
    } else {
        return None;
    };
    let mut out = String::new();
    for p in parts {
        crate::facts::push_part(&mut out, p);
    }
    (!out.is_empty()).then_some(out)
}

fn transaction(t: &pb::TransactionStmt) -> Base {
    use pb::TransactionStmtKind as K;
    let command = match K::try_from(t.kind).unwrap_or(K::Undefined) {
        K::TransStmtBegin => "BEGIN",
        K::TransStmtStart => "START TRANSACTION",
        K::TransStmtCommit => "COMMIT",
        K::TransStmtRollback => "ROLLBACK",
        K::TransStmtSavepoint => "SAVEPOINT",
        K::TransStmtRelease => "RELEASE",
        K::TransStmtRollbackTo => "ROLLBACK TO SAVEPOINT",
        K::TransStmtPrepare => "PREPARE TRANSACTION",
        K::TransStmtCommitPrepared => "COMMIT PREPARED",
        K::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
        K::Undefined => return base(Unknown, "UNKNOWN"),
    };
    let mut b = base(Tcl, command);
    b.lifts = read_write(&t.options);
    b
}

fn select(s: &pb::SelectStmt) -> Base {
    use pb::LockClauseStrength as L;
    if s.into_clause.is_some() {
        return base(Ddl, "SELECT INTO");
    }
    let strongest = s
        .locking_clause
        .iter()
        .filter_map(|l| match &l.node {
            Some(N::LockingClause(l)) => Some(l.strength),
            _ => None,
        })
        .max();
    let command = match strongest.map(|s| L::try_from(s).unwrap_or(L::Undefined)) {
        Some(L::LcsForupdate) => "SELECT FOR UPDATE",
        Some(L::LcsFornokeyupdate) => "SELECT FOR NO KEY UPDATE",
        Some(L::LcsForshare) => "SELECT FOR SHARE",
        Some(L::LcsForkeyshare) => "SELECT FOR KEY SHARE",
        _ if !s.values_lists.is_empty() => "VALUES",
        _ => "SELECT",
    };
    // Locking and writable CTEs raise this to write in `classify`.
    base(Read, command)
}

/// Does this COPY statement's text name STDIN / STDOUT as its file? The
/// file name is the token after the first `FROM` / `TO` outside
/// parentheses (both are reserved words, so no table is called that);
/// `PROGRAM` may come between. Anything else, including `''`, is a file.
fn copies_std_stream(text: &str) -> bool {
    let mut lx = Lexer::new(text);
    let mut depth = 0usize;
    let mut after_direction = false;
    while let Step::Token(t) = lx.next_step() {
        let word = (t.kind == Kind::Word)
            .then(|| text.get(t.start..t.end))
            .flatten()
            .unwrap_or_default();
        if after_direction {
            if word.eq_ignore_ascii_case("program") {
                continue;
            }
            return word.eq_ignore_ascii_case("stdin") || word.eq_ignore_ascii_case("stdout");
        }
        match (t.kind, text.get(t.start..t.end).unwrap_or_default()) {
            (Kind::Punct, "(") => depth += 1,
            (Kind::Punct, ")") => depth = depth.saturating_sub(1),
            (Kind::Word, w) if depth == 0 && (w.eq_ignore_ascii_case("from") || w.eq_ignore_ascii_case("to")) => {
                after_direction = true;
            }
            _ => {}
        }
    }
    false
}

/// Class and command of one top-level node. EXPLAIN and PREPARE, which take
/// their inner statement's class, are handled by the caller.
///
/// `text` is the statement's own source text (COPY needs it).
/// PostgreSQL's lock mode number for ACCESS SHARE (lockdefs.h).
const ACCESS_SHARE_LOCK: i32 = 1;

pub(crate) fn classify_base(node: &N, text: &str) -> Base {
    match node {
        N::SelectStmt(s) => select(s),
        N::InsertStmt(_) => base(Write, "INSERT"),
        N::UpdateStmt(_) => base(Write, "UPDATE"),
        N::DeleteStmt(_) => base(Write, "DELETE"),
        N::MergeStmt(_) => base(Write, "MERGE"),
        N::TruncateStmt(_) => base(Write, "TRUNCATE TABLE"),
        // ACCESS SHARE is the lock every SELECT takes (pg_dump asks for it
        // up front); any stronger mode is a writer's lock.
        N::LockStmt(l) if l.mode == ACCESS_SHARE_LOCK => {
            let mut b = base(Read, "LOCK TABLE");
            b.demote = Some("LockStmt");
            b
        }
        N::LockStmt(_) => base(Write, "LOCK TABLE"),
        N::RefreshMatViewStmt(_) => base(Write, "REFRESH MATERIALIZED VIEW"),
        N::CopyStmt(c) => {
            // A server file or PROGRAM needs pg_read/write_server_files or
            // pg_execute_server_program: privilege territory. The tree shows
            // STDIN and the file name '' alike (empty filename), so the
            // keyword in the text decides: a literal must never do that.
            let class = if !c.filename.is_empty() || c.is_program || !copies_std_stream(text) {
                Dcl
            } else if c.is_from {
                Write
            } else {
                Read
            };
            let mut b = base(class, "COPY");
            b.demote = (!c.is_from).then_some("CopyStmt");
            b
        }
        N::DeclareCursorStmt(_) => base(Read, "DECLARE CURSOR"),
        N::FetchStmt(f) => base(Read, if f.ismove { "MOVE" } else { "FETCH" }),
        N::ClosePortalStmt(c) => base(
            Read,
            if c.portalname.is_empty() {
                "CLOSE CURSOR ALL"
            } else {
                "CLOSE CURSOR"
            },
        ),
        N::VariableShowStmt(_) => base(Utility, "SHOW"),
        N::VariableSetStmt(s) => variable_set(s),
        N::TransactionStmt(t) => transaction(t),
        N::ConstraintsSetStmt(_) => base(Tcl, "SET CONSTRAINTS"),
        N::DiscardStmt(d) => {
            use pb::DiscardMode as D;
            let (command, lifts) = match D::try_from(d.target).unwrap_or(D::Undefined) {
                // DISCARD ALL includes RESET ALL.
                D::DiscardAll => ("DISCARD ALL", false),
                D::DiscardPlans => ("DISCARD PLANS", false),
                D::DiscardSequences => ("DISCARD SEQUENCES", false),
                D::DiscardTemp => ("DISCARD TEMP", false),
                D::Undefined => ("DISCARD", true),
            };
            let mut b = base(Utility, command);
            b.lifts = lifts;
            b
        }
        N::ListenStmt(_) => base(Utility, "LISTEN"),
        N::UnlistenStmt(_) => base(Utility, "UNLISTEN"),
        N::NotifyStmt(_) => base(Utility, "NOTIFY"),
        N::DeallocateStmt(d) => base(Utility, if d.isall { "DEALLOCATE ALL" } else { "DEALLOCATE" }),
        N::VacuumStmt(v) if v.is_vacuumcmd => base(Ddl, "VACUUM"),
        N::VacuumStmt(_) => {
            let mut b = base(Utility, "ANALYZE");
            b.demote = Some("VacuumStmt");
            b
        }
        N::ClusterStmt(_) => base(Ddl, "CLUSTER"),
        N::ReindexStmt(_) => base(Ddl, "REINDEX"),
        N::DoStmt(_) => base(Unknown, "DO"),
        N::CallStmt(_) => base(Unknown, "CALL"),
        N::ExecuteStmt(_) => base(Unknown, "EXECUTE"),
        // --- DCL ---
        N::GrantStmt(g) => base(Dcl, if g.is_grant { "GRANT" } else { "REVOKE" }),
        N::GrantRoleStmt(g) => base(Dcl, if g.is_grant { "GRANT ROLE" } else { "REVOKE ROLE" }),
        N::AlterDefaultPrivilegesStmt(_) => base(Dcl, "ALTER DEFAULT PRIVILEGES"),
        N::CreateRoleStmt(r) => base(
            Dcl,
            match pb::RoleStmtType::try_from(r.stmt_type) {
                Ok(pb::RoleStmtType::RolestmtUser) => "CREATE USER",
                Ok(pb::RoleStmtType::RolestmtGroup) => "CREATE GROUP",
                _ => "CREATE ROLE",
            },
        ),
        N::AlterRoleStmt(_) => base(Dcl, "ALTER ROLE"),
        N::AlterRoleSetStmt(r) => {
            let mut b = base(Dcl, "ALTER ROLE");
            b.lifts = r.setstmt.as_ref().is_some_and(set_lifts);
            b
        }
        N::DropRoleStmt(_) => base(Dcl, "DROP ROLE"),
        N::DropOwnedStmt(_) => base(Dcl, "DROP OWNED"),
        N::ReassignOwnedStmt(_) => base(Dcl, "REASSIGN OWNED"),
        N::AlterSystemStmt(s) => {
            let mut b = base(Dcl, "ALTER SYSTEM");
            b.lifts = s.setstmt.as_ref().is_some_and(set_lifts);
            b
        }
        N::LoadStmt(_) => base(Dcl, "LOAD"),
        N::CheckPointStmt(_) => base(Dcl, "CHECKPOINT"),
        N::RenameStmt(r) if names::is_type(r.rename_type, O::ObjectRole) => base(Dcl, "ALTER ROLE"),
        _ => crate::ddl::classify_ddl(node),
    }
}
