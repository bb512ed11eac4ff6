//! Words for command names: PostgreSQL object types as a DBA writes them
//! after CREATE / ALTER / DROP, and the DCL function list.

use pg_query::protobuf::ObjectType as O;

/// `ALTER <this>` / `DROP <this>` for an object type (pg_query's i32).
pub(crate) fn object(raw: i32) -> &'static str {
    match O::try_from(raw).unwrap_or(O::Undefined) {
        O::ObjectAccessMethod => "ACCESS METHOD",
        O::ObjectAggregate => "AGGREGATE",
        O::ObjectAmop | O::ObjectAmproc | O::ObjectOpfamily => "OPERATOR FAMILY",
        O::ObjectAttribute | O::ObjectType => "TYPE",
        O::ObjectCast => "CAST",
        O::ObjectColumn | O::ObjectDefault | O::ObjectTabconstraint | O::ObjectTable => "TABLE",
        O::ObjectCollation => "COLLATION",
        O::ObjectConversion => "CONVERSION",
        O::ObjectDatabase => "DATABASE",
        O::ObjectDefacl => "DEFAULT PRIVILEGES",
        O::ObjectDomain | O::ObjectDomconstraint => "DOMAIN",
        O::ObjectEventTrigger => "EVENT TRIGGER",
        O::ObjectExtension => "EXTENSION",
        O::ObjectFdw => "FOREIGN DATA WRAPPER",
        O::ObjectForeignServer => "SERVER",
        O::ObjectForeignTable => "FOREIGN TABLE",
        O::ObjectFunction => "FUNCTION",
        O::ObjectIndex => "INDEX",
        O::ObjectLanguage => "LANGUAGE",
        O::ObjectLargeobject => "LARGE OBJECT",
        O::ObjectMatview => "MATERIALIZED VIEW",
        O::ObjectOpclass => "OPERATOR CLASS",
        O::ObjectOperator => "OPERATOR",
        O::ObjectParameterAcl => "PARAMETER",
        O::ObjectPolicy => "POLICY",
        O::ObjectProcedure => "PROCEDURE",
        O::ObjectPublication | O::ObjectPublicationNamespace | O::ObjectPublicationRel => "PUBLICATION",
        O::ObjectRole => "ROLE",
        O::ObjectRoutine => "ROUTINE",
        O::ObjectRule => "RULE",
        O::ObjectSchema => "SCHEMA",
        O::ObjectSequence => "SEQUENCE",
        O::ObjectSubscription => "SUBSCRIPTION",
        O::ObjectStatisticExt => "STATISTICS",
        O::ObjectTablespace => "TABLESPACE",
        O::ObjectTransform => "TRANSFORM",
        O::ObjectTrigger => "TRIGGER",
        O::ObjectTsconfiguration => "TEXT SEARCH CONFIGURATION",
        O::ObjectTsdictionary => "TEXT SEARCH DICTIONARY",
        O::ObjectTsparser => "TEXT SEARCH PARSER",
        O::ObjectTstemplate => "TEXT SEARCH TEMPLATE",
        O::ObjectUserMapping => "USER MAPPING",
        O::ObjectView => "VIEW",
        O::Undefined => "OBJECT",
    }
}

/// Object types whose DROP / COMMENT names a relation by a name list.
pub(crate) fn is_relation(raw: i32) -> bool {
    matches!(
        O::try_from(raw).unwrap_or(O::Undefined),
        O::ObjectTable | O::ObjectView | O::ObjectMatview | O::ObjectForeignTable | O::ObjectSequence
    )
}

/// Object types named `<relation>.<name>` (the last part is not the table).
pub(crate) fn is_on_relation(raw: i32) -> bool {
    matches!(
        O::try_from(raw).unwrap_or(O::Undefined),
        O::ObjectTrigger | O::ObjectRule | O::ObjectPolicy | O::ObjectColumn | O::ObjectTabconstraint
    )
}

pub(crate) fn is_type(raw: i32, t: O) -> bool {
    O::try_from(raw).is_ok_and(|o| o == t)
}

/// Functions whose call makes a statement DCL: they change the session's
/// privileges or settings, act on other sessions or the server, or touch
/// server files / other databases (the privileges COPY TO/FROM a file
/// needs). Matched on the last name part, whatever the schema, so a
/// same-named wrapper is treated the same (strict on purpose).
pub(crate) fn is_dcl_function(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.starts_with("dblink")
        || matches!(
            last,
            "pg_terminate_backend"
                | "pg_cancel_backend"
                | "pg_reload_conf"
                | "lo_import"
                | "lo_export"
                | "pg_read_file"
                | "pg_read_binary_file"
                | "pg_ls_dir"
                | "pg_stat_file"
                | "pg_file_write"
                | "pg_promote"
                | "pg_rotate_logfile"
                | "pg_switch_wal"
                | "pg_create_restore_point"
        )
}

/// Whether the text may call `set_config` or write `pg_settings` (whose
/// UPDATE is `set_config` by another name): then a literal's value decides
/// what it does. A plain substring test: a hit in a comment or a string
/// only makes the caller stricter.
pub(crate) fn mentions_set_config(sql: &str) -> bool {
    const NAMES: [&[u8]; 2] = [b"set_config", b"pg_settings"];
    NAMES
        .iter()
        .any(|name| sql.as_bytes().windows(name.len()).any(|w| w.eq_ignore_ascii_case(name)))
}

/// `set_config()`, whose first argument decides what it does (see
/// `classify::set_config_effect`).
pub(crate) fn is_set_config(name: &str) -> bool {
    name.rsplit('.').next() == Some("set_config")
}

/// The setting only the gateway may set: the application name tags the
/// session with its task in the database's own logs and
/// `pg_stat_activity`. (`client_encoding` and `standard_conforming_strings`
/// are ordinary settings: the gateway follows the server's reading of
/// them, and ends a session whose encoding it cannot read.)
pub(crate) fn is_gateway_param(name: &str) -> bool {
    name.eq_ignore_ascii_case("application_name")
}

/// Settings whose SET / RESET lifts a read-only session (GUC names are
/// case-insensitive, even when written as quoted identifiers).
pub(crate) fn is_read_only_param(name: &str) -> bool {
    name.eq_ignore_ascii_case("transaction_read_only") || name.eq_ignore_ascii_case("default_transaction_read_only")
}

/// Settings whose SET / RESET changes who the session is.
pub(crate) fn is_role_param(name: &str) -> bool {
    name.eq_ignore_ascii_case("role") || name.eq_ignore_ascii_case("session_authorization")
}

/// Built-in functions that change data even in a read-only transaction
/// (PostgreSQL's read-only mode does not stop them): large objects, and
/// statistics, replication-slot and origin state. A call makes the
/// statement a write. Matched on the last name part, like the DCL list.
pub(crate) fn writes_despite_read_only(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    (last.starts_with("lo_")
        && !matches!(
            last,
            "lo_get" | "lo_lseek" | "lo_lseek64" | "lo_tell" | "lo_tell64" | "lo_close"
        ))
        || last == "lowrite"
        || last.starts_with("pg_stat_reset")
        || last.starts_with("pg_replication_origin_")
        || (last.starts_with("pg_") && last.contains("replication_slot"))
        || matches!(
            last,
            "pg_logical_emit_message" | "pg_notify" | "pg_import_system_collations"
        )
}

/// Built-in functions that run SQL given to them as text (or read a whole
/// table, schema or database named by a value): the gateway cannot see
/// which tables they touch.
pub(crate) fn runs_dynamic_sql(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.starts_with("query_to_xml")
        || last.starts_with("table_to_xml")
        || last.starts_with("schema_to_xml")
        || last.starts_with("database_to_xml")
        || last.starts_with("cursor_to_xml")
        || matches!(last, "ts_stat" | "ts_rewrite")
}
