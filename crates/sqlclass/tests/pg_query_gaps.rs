//! Where pg_query's own table extraction (`ParseResult::tables` and
//! friends) is wrong or incomplete, and what this crate reports instead.
//! Each case records pg_query 18.1's answer next to ours, so an upgrade that
//! changes pg_query's behaviour shows up here. Our answers are also in the
//! snapshot; this file is the evidence for why the crate walks the whole
//! tree itself instead of using `tables()`.

mod cases;

use taskgate_sqlclass::classify;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// (sql, pg_query's select_tables, pg_query's dml_tables + ddl_tables,
///  our tables_read, our tables_written)
type Gap = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const GAPS: &[Gap] = &[
    // SelectStmt.into_clause is not visited: the new table is missed.
    (
        "SELECT * INTO new_t FROM old_t",
        &["old_t"],
        &[],
        &["old_t"],
        &["new_t"],
    ),
    // VALUES lists are not visited.
    ("VALUES ((SELECT secret FROM vault))", &[], &[], &["vault"], &[]),
    // VALUES, ON CONFLICT and RETURNING sub-selects are not visited.
    (
        "INSERT INTO t VALUES ((SELECT max(id) FROM secret)) ON CONFLICT (id) DO UPDATE SET v = (SELECT v FROM other) RETURNING (SELECT 1 FROM r)",
        &[],
        &["t"],
        &["other", "r", "secret"],
        &["t"],
    ),
    // A non-recursive CTE named like a table reads the real table; pg_query
    // drops it (its own TODO in parse_result.rs).
    ("WITH t AS (SELECT * FROM t) SELECT * FROM t", &[], &[], &["t"], &[]),
    // COPY ... TO reads; pg_query calls every COPY relation DML.
    ("COPY t TO STDOUT", &[], &["t"], &["t"], &[]),
    // EXPLAIN without ANALYZE runs nothing; pg_query reports the target as DML.
    ("EXPLAIN DELETE FROM t", &[], &["t"], &["t"], &[]),
    // Row locks are writes for a gateway; pg_query reports plain selects.
    ("SELECT * FROM jobs FOR UPDATE", &["jobs"], &[], &[], &["jobs"]),
    // DECLARE CURSOR and PREPARE bodies are not visited.
    ("DECLARE c CURSOR FOR SELECT * FROM t", &[], &[], &["t"], &[]),
    ("PREPARE p AS SELECT * FROM t", &[], &[], &["t"], &[]),
    // Statements not visited at all.
    ("ALTER TABLE t RENAME TO u", &[], &[], &[], &["t"]),
    ("COMMENT ON TABLE t IS 'x'", &[], &[], &[], &["t"]),
    ("DROP VIEW v", &[], &[], &[], &["v"]),
    ("CREATE POLICY p ON t USING (true)", &[], &[], &[], &["t"]),
    ("CLUSTER t", &[], &[], &[], &["t"]),
    ("REINDEX TABLE t", &[], &[], &[], &["t"]),
    // The attached partition is altered too.
    (
        "ALTER TABLE parent ATTACH PARTITION p2 FOR VALUES FROM (1) TO (2)",
        &[],
        &["parent"],
        &[],
        &["p2", "parent"],
    ),
    // A composite type is not a table (pg_query reports it as DDL on a table).
    ("ALTER TYPE pair ADD ATTRIBUTE c int", &[], &["pair"], &[], &[]),
    // LIMIT, FILTER, MERGE WHEN conditions, xmltable PASSING are not visited.
    (
        "SELECT * FROM o LIMIT (SELECT n FROM limits)",
        &["o"],
        &[],
        &["limits", "o"],
        &[],
    ),
    (
        "SELECT count(*) FILTER (WHERE x > (SELECT avg(x) FROM stats)) FROM events",
        &["events"],
        &[],
        &["events", "stats"],
        &[],
    ),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x IN (SELECT x FROM m) THEN DELETE",
        &["s"],
        &["t"],
        &["m", "s"],
        &["t"],
    ),
    (
        "SELECT * FROM xmltable('/r' PASSING (SELECT doc FROM docs LIMIT 1) COLUMNS a int)",
        &[],
        &[],
        &["docs"],
        &[],
    ),
];

#[test]
fn pg_query_gaps_are_still_as_documented_and_we_cover_them() {
    for (sql, pq_select, pq_other, read, written) in GAPS {
        let r = pg_query::parse(sql, 0).expect("parses");
        let mut other = r.dml_tables();
        other.extend(r.ddl_tables());
        assert_eq!(sorted(r.select_tables()), *pq_select, "pg_query select_tables of {sql}");
        assert_eq!(sorted(other), *pq_other, "pg_query dml/ddl tables of {sql}");
        let c = classify(sql);
        assert_eq!(c.tables_read, *read, "our tables_read of {sql}");
        assert_eq!(c.tables_written, *written, "our tables_written of {sql}");
    }
}

/// pg_query's `functions()` misses calls in VALUES: relying on it would let
/// `INSERT ... VALUES (set_config(...))` lift a read-only session unseen.
#[test]
fn pg_query_misses_set_config_in_values() {
    let sql = "INSERT INTO log VALUES (set_config('default_transaction_read_only', 'off', false))";
    let r = pg_query::parse(sql, 0).expect("parses");
    assert!(r.functions().is_empty());
    let c = classify(sql);
    assert_eq!(c.class, taskgate_sqlclass::Class::Dcl);
    assert!(c.lifts_read_only);
}

/// Our display quoting undone: `"a""b"` -> `a"b`.
fn unquote(t: &str) -> String {
    t.replace("\"\"", "\u{1}").replace('"', "").replace('\u{1}', "\"")
}

/// On the whole corpus we never miss a table pg_query finds (names compared
/// unquoted).
#[test]
fn we_find_every_table_pg_query_finds() {
    for (_, sqls) in cases::CASES {
        for sql in *sqls {
            let Ok(r) = pg_query::parse(sql, 0) else { continue };
            let c = classify(sql);
            let ours: Vec<String> = c
                .tables_read
                .iter()
                .chain(&c.tables_written)
                .map(|t| unquote(t))
                .collect();
            for t in r.tables() {
                // pg_query's false positive: ALTER TYPE names a composite type.
                if sql.starts_with("ALTER TYPE") {
                    continue;
                }
                // pg_query drops the database part of db.schema.table.
                let found = ours.iter().any(|o| *o == t || o.ends_with(&format!(".{t}")));
                assert!(found, "{sql}: pg_query found {t}, we have {ours:?}");
            }
        }
    }
}
