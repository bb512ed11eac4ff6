//! Fuzz-style property tests (deterministic, no extra crates): random bytes,
//! random SQL-ish token soup and mutated real statements must never panic
//! any public function, and the cache must agree with a fresh parse.

use taskgate_sqlclass::{Classifier, classify, fingerprint, split};

/// xorshift64*: deterministic, good enough to shake a lexer.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "SELECT",
    "select",
    " ",
    "\n",
    "*",
    "FROM",
    "t",
    "\"Q\"",
    "'",
    "''",
    "E'",
    "\\",
    "$$",
    "$a$",
    "$1",
    "--",
    "/*",
    "*/",
    ";",
    "(",
    ")",
    ",",
    ".",
    "::",
    "1",
    "1e",
    "0x",
    "WITH",
    "AS",
    "BEGIN",
    "ATOMIC",
    "END",
    "DELETE",
    "INSERT INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "FOR UPDATE",
    "set_config(",
    "U&\"",
    "UESCAPE",
    "?",
    "ü",
    "\0",
    "EXPLAIN",
    "ANALYZE",
    "COPY",
    "TO",
    "STDOUT",
    "DO",
    "RETURNING",
    "CREATE TABLE",
    "x",
];

/// Iterations per test; raise it for a longer hunt: `FUZZ_ITERS=200000 cargo test --test fuzz`.
fn iters(default: usize) -> usize {
    std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn check(sql: &str, cache: &Classifier) {
    let c = classify(sql);
    let _ = fingerprint(sql);
    for s in split(sql) {
        assert!(sql.contains(s), "split piece not from input");
        let _ = classify(s);
    }
    let cached = cache.classify(sql);
    // Text the parser accepts must get exactly its own classification from
    // the cache. Text it refuses may hit the entry of a valid statement of
    // the same shape (`DO 1` looks like `DO 'x'`): harmless, because the
    // server refuses that text too, so nothing runs.
    if c.error.is_none() {
        assert_eq!(*cached, c, "{sql:?}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let cache = Classifier::new(256);
    for _ in 0..iters(3000) {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes), &cache);
    }
}

#[test]
fn token_soup_never_panics() {
    let mut rng = Rng(42);
    let cache = Classifier::new(256);
    for _ in 0..iters(5000) {
        let n = 1 + rng.below(16);
        let sql: String = (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect();
        check(&sql, &cache);
    }
}

#[test]
fn truncated_real_statements_never_panic() {
    let real = [
        "WITH x AS (DELETE FROM a RETURNING *) SELECT * FROM x JOIN \"B\" USING (id) FOR UPDATE OF x",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
        "SELECT E'a\\'b', $q$x;y$q$, U&\"d!0061t\" UESCAPE '!' FROM t /* c /* d */ */ WHERE a = $1; -- end",
        "COPY (SELECT set_config('a', 'b', false)) TO STDOUT; EXPLAIN (ANALYZE 1) MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
    ];
    let cache = Classifier::new(256);
    for sql in real {
        for end in 0..=sql.len() {
            if let Some(prefix) = sql.get(..end) {
                check(prefix, &cache);
            }
            if let Some(suffix) = sql.get(end..) {
                check(suffix, &cache);
            }
        }
    }
}

#[test]
fn deep_nesting_does_not_crash() {
    for depth in [10, 100, 1000, 5000] {
        let sql = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        let _ = classify(&sql);
        let _ = fingerprint(&sql);
        assert_eq!(split(&sql).len(), 1);
    }
}
