//! Classifier cache: same shape with different literals hits, different
//! shapes miss, the capacity bound holds, errors are not cached, and many
//! threads can share one classifier.

use std::sync::Arc;

use taskgate_sqlclass::{Class, Classifier, MAX_CACHED_LEN, classify};

/// Enough room that no shard evicts in these tests: with 64 shards, 16
/// entries each. (At 100, a shard holds one entry, and two keys hashing to
/// the same shard made hit counts flaky.)
const ROOMY: usize = 1024;

#[test]
fn classifier_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Classifier>();
}

#[test]
fn same_shape_different_literals_hits() {
    let c = Classifier::new(ROOMY);
    let a = c.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
    let b = c.classify("select abalance from pgbench_accounts where aid = 987654 -- again");
    let d = c.classify("SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    assert_eq!(c.stats(), (2, 1));
    assert!(
        Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &d),
        "hits share the cached value"
    );
    assert_eq!(a.tables_read, ["pgbench_accounts"]);
}

#[test]
fn different_shapes_miss() {
    let c = Classifier::new(ROOMY);
    let r = c.classify("SELECT * FROM t WHERE id = 1");
    let w = c.classify("DELETE FROM t WHERE id = 1");
    let q = c.classify("SELECT * FROM \"T\" WHERE id = 1");
    assert_eq!(c.stats(), (0, 3));
    assert_eq!((r.class, w.class), (Class::Read, Class::Write));
    assert_eq!(q.tables_read, ["T"]);
    assert_eq!(c.len(), 3);
}

#[test]
fn set_config_is_cached_per_setting_name() {
    let c = Classifier::new(ROOMY);
    let plain = c.classify("SELECT set_config('search_path', '', false)");
    let lifting = c.classify("SELECT set_config('default_transaction_read_only', 'off', false)");
    let role = c.classify("SELECT set_config('role', 'postgres', false)");
    let unknown = c.classify("SELECT set_config($1, $2, false)");
    assert_eq!(c.stats(), (0, 4), "literals are kept in set_config fingerprints");
    assert_eq!((plain.class, plain.lifts_read_only), (Class::Read, false));
    assert_eq!((lifting.class, lifting.lifts_read_only), (Class::Read, true));
    assert_eq!((role.class, role.lifts_read_only), (Class::Dcl, true));
    assert_eq!((unknown.class, unknown.lifts_read_only), (Class::Dcl, true));
    let again = c.classify("SELECT set_config('default_transaction_read_only', 'off', false)");
    assert!(again.lifts_read_only);
    assert_eq!(c.stats(), (1, 4));
}

#[test]
fn capacity_bound_holds() {
    for cap in [0usize, 1, 3, 7, 64, 100, 1000] {
        let c = Classifier::new(cap);
        assert!(c.capacity() <= cap, "capacity {} > {cap}", c.capacity());
        for i in 0..(cap * 3 + 50) {
            // Every statement a different shape (table name differs).
            let got = c.classify(&format!("SELECT * FROM t{i} WHERE id = {i}"));
            assert_eq!(got.tables_read, [format!("t{i}")]);
            assert!(c.len() <= cap, "len {} > capacity {cap}", c.len());
        }
    }
}

#[test]
fn unparsable_text_is_not_cached() {
    let c = Classifier::new(ROOMY);
    let a = c.classify("SELECT 1 'secret literal'");
    assert!(a.error.as_deref().unwrap_or_default().contains("secret"));
    let b = c.classify("SELECT 1 'other literal'");
    assert!(
        !b.error.as_deref().unwrap_or_default().contains("secret"),
        "no cross-session leak"
    );
    assert_eq!(c.stats(), (0, 2));
    assert!(c.is_empty());
}

#[test]
fn long_statements_bypass_the_cache() {
    let c = Classifier::new(ROOMY);
    let long = format!(
        "SELECT 1 FROM t WHERE x IN ({})",
        vec!["1"; MAX_CACHED_LEN / 2].join(",")
    );
    assert!(long.len() > MAX_CACHED_LEN);
    assert_eq!(c.classify(&long).class, Class::Read);
    assert_eq!(c.classify(&long).class, Class::Read);
    assert_eq!(c.stats(), (0, 2));
    assert!(c.is_empty());
}

#[test]
fn concurrent_use_from_threads() {
    // Room enough that no shard evicts: the 101 shapes (`t0`..`t96` are
    // distinct tables) over 64 shards of one entry each collided often
    // enough, under some hash seeds, to make misses outnumber hits.
    let c = Arc::new(Classifier::new(64 * 16));
    let shapes = [
        ("SELECT * FROM a WHERE id = {}", Class::Read),
        ("UPDATE a SET v = {} WHERE id = 1", Class::Write),
        ("DELETE FROM b WHERE id = {}", Class::Write),
        ("SELECT pg_terminate_backend({})", Class::Dcl),
        ("CREATE TABLE t{} (x int)", Class::Ddl),
    ];
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let (shape, class) = shapes[(t + i) % shapes.len()];
                    let sql = shape.replace("{}", &(i % 97).to_string());
                    let got = c.classify(&sql);
                    assert_eq!(got.class, class, "{sql}");
                    assert_eq!(*got, classify(&sql), "{sql}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread panicked");
    }
    let (hits, misses) = c.stats();
    assert_eq!(hits + misses, 16 * 500);
    assert!(
        hits > misses,
        "repeat shapes should mostly hit: {hits} hits, {misses} misses"
    );
    assert!(c.len() <= 64 * 16);
}
