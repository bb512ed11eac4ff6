//! `SET application_name`: the name a client asks the server to report.
//!
//! The gateway keeps the server's own `application_name` naming the task
//! (`taskgate/<task id>`), so the database's logs and `pg_stat_activity`
//! tie every session to it. Drivers set the name right after login
//! (pgjdbc: `SET application_name = 'PostgreSQL JDBC Driver'`), so
//! refusing it breaks them: the gateway sends such a statement with the
//! task's tag before the client's name instead, and shows the client the
//! name it asked for.

use pg_query::NodeEnum as N;
use pg_query::protobuf::VariableSetKind;
use pg_query::protobuf::a_const::Val;

use crate::prepared::only_statement;

/// What a statement that is nothing but a `SET` of `application_name`
/// asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationName {
    /// `SET [SESSION | LOCAL] application_name = value` (or `TO value`).
    Set { value: String, local: bool },
    /// `RESET application_name`, `SET application_name TO DEFAULT`: back
    /// to the value the session logged in with, which the gateway chose.
    Reset,
}

/// The change to `application_name` that `sql` (one statement) asks for;
/// `None` for any other statement, several statements, or a form the
/// server would refuse (several values, `FROM CURRENT`).
pub fn application_name_set(sql: &str) -> Option<ApplicationName> {
    let Some(N::VariableSetStmt(set)) = only_statement(sql) else {
        return None;
    };
    // The server looks settings up ignoring case, quoted or not.
    if !set.name.eq_ignore_ascii_case("application_name") {
        return None;
    }
    let kind = VariableSetKind::try_from(set.kind).ok()?;
    match kind {
        VariableSetKind::VarSetDefault | VariableSetKind::VarReset => Some(ApplicationName::Reset),
        VariableSetKind::VarSetValue => {
            let [arg] = set.args.as_slice() else {
                return None;
            };
            let Some(N::AConst(c)) = &arg.node else {
                return None;
            };
            let value = match c.val.as_ref()? {
                Val::Sval(s) => s.sval.clone(),
                Val::Ival(i) => i.ival.to_string(),
                Val::Fval(f) => f.fval.clone(),
                Val::Boolval(_) | Val::Bsval(_) => return None,
            };
            Some(ApplicationName::Set {
                value,
                local: set.is_local,
            })
        }
        _ => None,
    }
}

/// The statement that sets `value` as an `E''` string, which reads the
/// same under every `standard_conforming_strings`.
pub fn set_application_name(value: &str, local: bool) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "''");
    let scope = if local { "LOCAL " } else { "" };
    format!("SET {scope}application_name = E'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(value: &str, local: bool) -> Option<ApplicationName> {
        Some(ApplicationName::Set {
            value: value.to_owned(),
            local,
        })
    }

    #[test]
    fn every_spelling_of_the_set_is_read() {
        assert_eq!(
            application_name_set("SET application_name = 'PostgreSQL JDBC Driver'"),
            set("PostgreSQL JDBC Driver", false)
        );
        assert_eq!(
            application_name_set("set session APPLICATION_NAME to psql;"),
            set("psql", false)
        );
        assert_eq!(
            application_name_set("/* x */ SET LOCAL application_name = E'a\\'b'"),
            set("a'b", true)
        );
        assert_eq!(application_name_set("SET application_name = 5"), set("5", false));
        assert_eq!(application_name_set("SET \"Application_Name\" = 'a'"), set("a", false));
        assert_eq!(
            application_name_set("RESET application_name"),
            Some(ApplicationName::Reset)
        );
        assert_eq!(
            application_name_set("SET application_name TO DEFAULT"),
            Some(ApplicationName::Reset)
        );
    }

    #[test]
    fn anything_else_is_not() {
        for sql in [
            "SET application_name = 'a', 'b'",
            "SET application_name FROM CURRENT",
            "SET application_name = 'a'; SELECT 1",
            "SELECT set_config('application_name', 'a', false)",
            "SET search_path = 'a'",
            "RESET ALL",
        ] {
            assert_eq!(application_name_set(sql), None, "{sql}");
        }
    }

    #[test]
    fn the_set_sent_reads_back_as_the_value() {
        for value in ["taskgate/t PostgreSQL JDBC Driver", "it's", "back\\slash", ""] {
            let sql = set_application_name(value, false);
            assert_eq!(application_name_set(&sql), set(value, false), "{sql}");
        }
        assert_eq!(application_name_set(&set_application_name("x", true)), set("x", true));
    }
}
