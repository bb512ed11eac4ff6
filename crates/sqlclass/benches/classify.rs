//! Cache hit vs full parse: what the gateway pays per statement.
//!
//! Run: `cargo bench --bench classify -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use taskgate_sqlclass::{Classifier, classify, fingerprint, split};

const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "pgbench_insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2231, CURRENT_TIMESTAMP);",
    ),
    (
        "join_cte",
        "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') \
         SELECT c.name, sum(r.total) FROM recent r JOIN customers c ON c.id = r.customer_id \
         WHERE c.region = 'EU' AND r.status IN ('paid', 'shipped') GROUP BY c.name ORDER BY 2 DESC LIMIT 50",
    ),
];

fn bench(c: &mut Criterion) {
    for (name, sql) in STATEMENTS {
        let cache = Classifier::new(10_000);
        cache.classify(sql);
        c.bench_function(&format!("cache_hit/{name}"), |b| {
            b.iter(|| cache.classify(black_box(sql)))
        });
        c.bench_function(&format!("parse/{name}"), |b| b.iter(|| classify(black_box(sql))));
        c.bench_function(&format!("fingerprint/{name}"), |b| {
            b.iter(|| fingerprint(black_box(sql)))
        });
    }
    let script = "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2; \
                  SELECT abalance FROM pgbench_accounts WHERE aid = 2; END;";
    c.bench_function("split/pgbench_script", |b| b.iter(|| split(black_box(script))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
