//! `classify`: parse with PostgreSQL's grammar, classify each statement from
//! its own type (`statement`) plus everything nested in it (`walk`), and
//! combine several statements into the strictest.

use pg_query::NodeEnum as N;

use crate::builtins::is_catalog_function;
use crate::names::{
    is_dcl_function, is_gateway_param, is_read_only_param, is_role_param, is_set_config, runs_dynamic_sql,
    writes_despite_read_only,
};
use crate::statement::classify_base;
use crate::walk::walk;
use crate::{Class, Classification};

/// One statement's result before sorting and combining.
struct Partial {
    class: Class,
    command: String,
    read: Vec<String>,
    written: Vec<String>,
    lifts: bool,
    opaque: Vec<String>,
    /// Every statement kind that runs (see `Classification::commands`).
    commands: Vec<String>,
}

/// Classifies SQL text (one statement, or several combined: strictest
/// class, union of tables, any lift). Never panics, never does I/O.
pub fn classify(sql: &str) -> Classification {
    // pg_query's ParseResult construction indexes into the tree; the
    // grammar never produces shapes that would panic there, but the gateway
    // must not die on hostile input if it ever did.
    let parsed = std::panic::catch_unwind(|| pg_query::parse(sql, 0));
    let result = match parsed {
        Ok(Ok(r)) => r,
        Ok(Err(pg_query::Error::Parse(msg))) => return unparsable(msg),
        Ok(Err(e)) => return unparsable(e.to_string()),
        Err(_) => return unparsable("parser failed".to_owned()),
    };
    let mut parts = result.protobuf.stmts.iter().filter_map(|s| {
        let node = s.stmt.as_ref().and_then(|n| n.node.as_ref())?;
        Some(classify_node(node, statement_text(sql, s)))
    });
    let Some(first) = parts.next() else {
        // Empty input, only comments, only semicolons: nothing runs, and
        // the server answers EmptyQueryResponse, as to any client.
        return Classification {
            class: Class::Utility,
            command: "EMPTY".to_owned(),
            commands: vec!["EMPTY".to_owned()],
            statements: 0,
            ..unparsable(String::new())
        }
        .without_error();
    };
    let mut statements = 1;
    let combined = parts.fold(first, |mut acc, p| {
        statements += 1;
        acc.class = acc.class.stricter(p.class);
        acc.command.push_str("; ");
        acc.command.push_str(&p.command);
        acc.read.extend(p.read);
        acc.written.extend(p.written);
        acc.lifts |= p.lifts;
        acc.opaque.extend(p.opaque);
        acc.commands.extend(p.commands);
        acc
    });
    Classification {
        statements,
        ..finish(combined)
    }
}

/// The source text of one parsed statement (PostgreSQL's byte offsets; a
/// length of 0 means "to the end"). Empty if the offsets do not fit, which
/// makes the text-based checks take their strict answer.
fn statement_text<'a>(sql: &'a str, s: &pg_query::protobuf::RawStmt) -> &'a str {
    let start = usize::try_from(s.stmt_location).unwrap_or(0);
    let text = match usize::try_from(s.stmt_len) {
        Ok(0) | Err(_) => sql.get(start..),
        Ok(len) => sql.get(start..start.saturating_add(len)),
    };
    text.unwrap_or_default()
}

fn unparsable(msg: String) -> Classification {
    Classification {
        error: Some(msg),
        ..Classification::unknown("UNKNOWN")
    }
}

impl Classification {
    /// One statement the gateway cannot see into, named `command` (a
    /// function call by oid, text it could not read): class `unknown`, no
    /// tables.
    pub fn unknown(command: &str) -> Classification {
        Classification {
            class: Class::Unknown,
            command: command.to_owned(),
            tables_read: Vec::new(),
            tables_written: Vec::new(),
            lifts_read_only: false,
            opaque: Vec::new(),
            commands: vec![command.to_owned()],
            error: None,
            statements: 1,
        }
    }

    fn without_error(mut self) -> Self {
        self.error = None;
        self
    }
}

fn finish(p: Partial) -> Classification {
    let sorted = |mut v: Vec<String>| {
        v.sort_unstable();
        v.dedup();
        v
    };
    Classification {
        class: p.class,
        command: p.command,
        tables_read: sorted(p.read),
        tables_written: sorted(p.written),
        lifts_read_only: p.lifts,
        opaque: sorted(p.opaque),
        commands: sorted(p.commands),
        error: None,
        statements: 1,
    }
}

fn classify_node(node: &N, text: &str) -> Partial {
    match node {
        N::ExplainStmt(e) => {
            let Some(inner) = e.query.as_deref().and_then(|q| q.node.as_ref()) else {
                return unknown_partial("EXPLAIN");
            };
            // ANALYZE executes the statement. Its value is not looked at:
            // `(ANALYZE 0)` and `(ANALYZE 1)` share a fingerprint, so any
            // ANALYZE option counts as executing (strict on purpose).
            let analyze = e
                .options
                .iter()
                .any(|o| matches!(&o.node, Some(N::DefElem(d)) if d.defname == "analyze"));
            let mut p = classify_node(inner, text);
            if analyze {
                p.command = "EXPLAIN ANALYZE".to_owned();
                p.commands.push(p.command.clone());
            } else {
                // Planned, not run: every table is only read, no function
                // is called, nothing is lifted.
                let mut w = std::mem::take(&mut p.written);
                p.read.append(&mut w);
                p.class = Class::Read;
                p.lifts = false;
                p.opaque.clear();
                p.command = "EXPLAIN".to_owned();
                p.commands = vec![p.command.clone()];
            }
            p
        }
        N::PrepareStmt(s) => {
            let Some(inner) = s.query.as_deref().and_then(|q| q.node.as_ref()) else {
                return unknown_partial("PREPARE");
            };
            let mut p = classify_node(inner, text);
            p.class = Class::Utility.stricter(p.class);
            p.command = "PREPARE".to_owned();
            // What it prepares runs at each EXECUTE: a rule on it holds
            // for the PREPARE too (strict on purpose).
            p.commands.push(p.command.clone());
            p
        }
        _ => classify_plain(node, text),
    }
}

/// What the `set_config` calls in a statement do, by their first
/// argument: a literal naming an ordinary setting (pg_dump's `search_path`)
/// changes nothing; a read-only setting lifts the read-only session; a role,
/// session authorization or the application name is dcl. A name that is not a
/// literal (a parameter, an expression) could be any of these: dcl and
/// lifting. If fewer calls are found than the walk counted, the same.
/// The fingerprint keeps literals verbatim in text that mentions
/// `set_config`, so the cache never mixes two different names.
fn set_config_effect(node: &N, expected: usize) -> (Class, bool) {
    let mut found = 0;
    let mut class = Class::Utility;
    let mut lifts = false;
    for (n, _, _, _) in node.nodes() {
        let pg_query::NodeRef::FuncCall(call) = n else {
            continue;
        };
        let name: Vec<&str> = call
            .funcname
            .iter()
            .filter_map(|p| match &p.node {
                Some(N::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect();
        if !name.last().is_some_and(|last| is_set_config(last)) {
            continue;
        }
        found += 1;
        let setting = match call.args.first().and_then(|a| a.node.as_ref()) {
            Some(N::AConst(c)) => string_const(c),
            Some(N::ColumnRef(c)) if column_is(c, "name") => settings_row_name(node),
            _ => None,
        };
        let (effect, lifted) = setting_effect(setting);
        class = class.stricter(effect);
        lifts |= lifted;
    }
    if found < expected {
        return (Class::Dcl, true);
    }
    (class, lifts)
}

/// What setting `setting` (`None`: a name the gateway cannot read) does:
/// a read-only setting lifts the read-only session; a role, session
/// authorization or the application name is dcl; an unknown one both.
fn setting_effect(setting: Option<&str>) -> (Class, bool) {
    match setting {
        Some(s) if is_read_only_param(s) => (Class::Utility, true),
        Some(s) if is_role_param(s) => (Class::Dcl, true),
        Some(s) if is_gateway_param(s) => (Class::Dcl, false),
        Some(_) => (Class::Utility, false),
        None => (Class::Dcl, true),
    }
}

fn string_const(c: &pg_query::protobuf::AConst) -> Option<&str> {
    match &c.val {
        Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.as_str()),
        _ => None,
    }
}

fn column_is(c: &pg_query::protobuf::ColumnRef, name: &str) -> bool {
    matches!(c.fields.as_slice(), [f] if matches!(&f.node, Some(N::String(s)) if s.sval == name))
}

/// pg_dump's idiom `SELECT set_config(name, '...', false) FROM pg_settings
/// WHERE name = 'x'`: the setting is `x`. Exactly that shape only (one
/// relation, pg_settings, and a single equality on `name`); anything else
/// is treated as an unknown setting.
fn settings_row_name(node: &N) -> Option<&str> {
    let N::SelectStmt(s) = node else {
        return None;
    };
    let [from] = s.from_clause.as_slice() else {
        return None;
    };
    let Some(N::RangeVar(r)) = &from.node else {
        return None;
    };
    if !is_pg_settings(r) {
        return None;
    }
    name_equals(s.where_clause.as_deref())
}

fn is_pg_settings(r: &pg_query::protobuf::RangeVar) -> bool {
    r.relname == "pg_settings" && (r.schemaname.is_empty() || r.schemaname == "pg_catalog") && r.catalogname.is_empty()
}

/// What a write to `pg_settings` sets: an UPDATE of it is `set_config` by
/// another name (the view's rule calls it), so the setting is the one its
/// `WHERE name = 'x'` names; any other shape (a writable CTE, no such
/// WHERE) is an unknown setting.
fn settings_written(node: &N, facts_written: &[&str]) -> Option<Option<String>> {
    let writes = facts_written
        .iter()
        .any(|t| *t == "pg_settings" || *t == "pg_catalog.pg_settings" || t.ends_with(".pg_catalog.pg_settings"));
    if !writes {
        return None;
    }
    let named = match node {
        N::UpdateStmt(u) if u.relation.as_ref().is_some_and(is_pg_settings) && u.with_clause.is_none() => {
            name_equals(u.where_clause.as_deref()).map(str::to_owned)
        }
        _ => None,
    };
    Some(named)
}

/// `name = 'x'` as the whole WHERE clause: `x`.
fn name_equals(where_clause: Option<&pg_query::protobuf::Node>) -> Option<&str> {
    let Some(N::AExpr(e)) = where_clause.and_then(|w| w.node.as_ref()) else {
        return None;
    };
    let is_equals = matches!(e.name.as_slice(), [op] if matches!(&op.node, Some(N::String(o)) if o.sval == "="));
    let column =
        matches!(e.lexpr.as_deref().and_then(|l| l.node.as_ref()), Some(N::ColumnRef(c)) if column_is(c, "name"));
    match e.rexpr.as_deref().and_then(|r| r.node.as_ref()) {
        Some(N::AConst(c)) if is_equals && column => string_const(c),
        _ => None,
    }
}

fn unknown_partial(command: &str) -> Partial {
    Partial {
        class: Class::Unknown,
        command: command.to_owned(),
        read: Vec::new(),
        written: Vec::new(),
        lifts: false,
        opaque: Vec::new(),
        commands: vec![command.to_owned()],
    }
}

fn classify_plain(node: &N, text: &str) -> Partial {
    let b = classify_base(node, text);
    let Some(facts) = walk(node) else {
        return unknown_partial(&b.command);
    };
    let mut class = b.class;
    // A DML node or row lock anywhere (writable CTE, COPY (DELETE ...
    // RETURNING) TO, DECLARE ... FOR UPDATE) makes it at least a write.
    if facts.dml_nodes > 0 || facts.locking {
        class = class.stricter(Class::Write);
    }
    if facts.functions.iter().any(|f| is_dcl_function(f)) {
        class = class.stricter(Class::Dcl);
    }
    if facts.functions.iter().any(|f| writes_despite_read_only(f)) {
        class = class.stricter(Class::Write);
    }
    let mut opaque = opaque_parts(&b.command, &facts.functions);
    // EXECUTE runs a prepared statement the gateway cannot see from here.
    if facts.execute_nodes > 0 {
        class = Class::Unknown;
        opaque.push("EXECUTE of a prepared statement".to_owned());
    }
    // Code the gateway cannot see may write anything it can reach.
    if !opaque.is_empty() {
        class = class.stricter(Class::Write);
    }
    let calls = facts.functions.iter().filter(|f| is_set_config(f)).count();
    let mut lifts = b.lifts;
    let written: Vec<&str> = facts
        .rels
        .iter()
        .filter(|r| r.written)
        .map(|r| r.name.as_str())
        .collect();
    if let Some(setting) = settings_written(node, &written) {
        let (effect, lifted) = setting_effect(setting.as_deref());
        class = class.stricter(effect);
        lifts |= lifted;
    }
    if calls > 0 {
        let (effect, lifted) = set_config_effect(node, calls);
        class = class.stricter(effect);
        lifts |= lifted;
    }
    let (mut read, mut written) = (Vec::new(), b.named);
    if !b.no_tables {
        for r in facts.rels {
            if r.written && b.demote != Some(r.parent) {
                written.push(r.name);
            } else {
                read.push(r.name);
            }
        }
    }
    let mut commands = vec![b.command.to_string()];
    commands.extend(facts.dml_commands.iter().map(|c| (*c).to_owned()));
    Partial {
        class,
        command: b.command.into_owned(),
        read,
        written,
        lifts,
        opaque,
        commands,
    }
}

/// What in a statement runs code the gateway cannot read: DO blocks and
/// procedures, functions outside PostgreSQL's catalog, and the catalog's
/// functions that run SQL handed to them as text. Each is named, so the
/// record says what could not be seen into.
fn opaque_parts(command: &str, functions: &[String]) -> Vec<String> {
    let mut parts = Vec::new();
    match command {
        "DO" => parts.push("DO block".to_owned()),
        "CALL" => parts.push("procedure call".to_owned()),
        _ => {}
    }
    for f in functions {
        if runs_dynamic_sql(f) {
            parts.push(format!("dynamic SQL in {f}()"));
        } else if !is_catalog_function(f) && !is_dcl_function(f) {
            parts.push(format!("function {f}()"));
        }
    }
    parts
}
