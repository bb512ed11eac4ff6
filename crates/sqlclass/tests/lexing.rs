//! Table-driven tests for `split` and `fingerprint`: PostgreSQL lexing rules
//! (quotes, E'' escapes, dollar quoting, quoted identifiers, nested comments,
//! BEGIN ATOMIC bodies) and the literal-normalized shape.

use taskgate_sqlclass::{fingerprint, split};

#[test]
fn split_cases() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("   ", &[]),
        (";;; ;", &[]),
        ("-- just a comment", &[]),
        ("SELECT 1", &["SELECT 1"]),
        ("  SELECT 1 ;  ", &["SELECT 1"]),
        ("SELECT 1; SELECT 2;", &["SELECT 1", "SELECT 2"]),
        ("SELECT 1;;SELECT 2", &["SELECT 1", "SELECT 2"]),
        // Leading comments belong to no statement (as in PostgreSQL 18's
        // statement locations); comments inside a statement stay.
        ("/* app */ SELECT 1; -- tail", &["SELECT 1"]),
        ("SELECT /* ; */ 1; SELECT 2", &["SELECT /* ; */ 1", "SELECT 2"]),
        (
            "SELECT 1 -- ; not a split\n, 2; SELECT 3",
            &["SELECT 1 -- ; not a split\n, 2", "SELECT 3"],
        ),
        (
            "SELECT /* a /* nested ; */ still ; comment */ 1; SELECT 2",
            &["SELECT /* a /* nested ; */ still ; comment */ 1", "SELECT 2"],
        ),
        ("SELECT 'a;b'; SELECT 2", &["SELECT 'a;b'", "SELECT 2"]),
        ("SELECT 'it''s; fine'; SELECT 2", &["SELECT 'it''s; fine'", "SELECT 2"]),
        // standard_conforming_strings: a backslash does not escape in ''.
        (r"SELECT 'a\'; SELECT 2", &[r"SELECT 'a\'", "SELECT 2"]),
        // ... but it does in E''.
        (r"SELECT E'a\'; b'; SELECT 2", &[r"SELECT E'a\'; b'", "SELECT 2"]),
        (r"SELECT e'\\'; SELECT 2", &[r"SELECT e'\\'", "SELECT 2"]),
        (
            "SELECT \"a;b\" FROM t; SELECT 2",
            &["SELECT \"a;b\" FROM t", "SELECT 2"],
        ),
        ("SELECT \"a\"\";b\"; SELECT 2", &["SELECT \"a\"\";b\"", "SELECT 2"]),
        ("SELECT $$a;b$$; SELECT 2", &["SELECT $$a;b$$", "SELECT 2"]),
        ("SELECT $x$a;$$;b$x$; SELECT 2", &["SELECT $x$a;$$;b$x$", "SELECT 2"]),
        (
            "DO $body$ BEGIN PERFORM 1; END $body$; SELECT 2",
            &["DO $body$ BEGIN PERFORM 1; END $body$", "SELECT 2"],
        ),
        ("SELECT $1; SELECT $2", &["SELECT $1", "SELECT $2"]),
        // `foo$$` is one identifier, so no dollar quote opens here.
        ("SELECT foo$$; SELECT 2", &["SELECT foo$$", "SELECT 2"]),
        (
            "SELECT U&'a;b', U&\"c;d\"; SELECT 2",
            &["SELECT U&'a;b', U&\"c;d\"", "SELECT 2"],
        ),
        ("SELECT B'01', X'1F'; SELECT 2", &["SELECT B'01', X'1F'", "SELECT 2"]),
        // Semicolons inside parentheses do not end a statement.
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 3",
            &[
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
                "SELECT 3",
            ],
        ),
        // SQL-standard function bodies: the parser decides.
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
            &[
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
                "SELECT 3",
            ],
        ),
        (
            "create procedure p() begin atomic insert into t values (1); end;",
            &["create procedure p() begin atomic insert into t values (1); end"],
        ),
        // Plain BEGIN is a transaction, not a body.
        (
            "BEGIN; UPDATE t SET a = 1; COMMIT;",
            &["BEGIN", "UPDATE t SET a = 1", "COMMIT"],
        ),
        // Unterminated quotes or comments: the whole text, the server refuses it.
        ("SELECT 'abc; SELECT 2", &["SELECT 'abc; SELECT 2"]),
        ("SELECT 1; SELECT \"abc", &["SELECT 1; SELECT \"abc"]),
        ("SELECT 1; /* open", &["SELECT 1; /* open"]),
        ("SELECT 1; /* /* */ still open", &["SELECT 1; /* /* */ still open"]),
        (
            "SELECT $$ never closed; SELECT 2",
            &["SELECT $$ never closed; SELECT 2"],
        ),
        ("SELECT E'\\'; SELECT 2", &["SELECT E'\\'; SELECT 2"]),
        // pgbench's own script.
        (
            "BEGIN;\nUPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;\nSELECT abalance FROM pgbench_accounts WHERE aid = $1;\nEND;",
            &[
                "BEGIN",
                "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                "END",
            ],
        ),
        (
            "SELECT 'ünï;cødé', \"ü;\" FROM ä; SELECT 2",
            &["SELECT 'ünï;cødé', \"ü;\" FROM ä", "SELECT 2"],
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(split(sql), *want, "split({sql:?})");
    }
}

#[test]
fn split_atomic_with_syntax_error_is_one_statement() {
    let sql = "CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END; nonsense here";
    assert_eq!(split(sql), vec![sql]);
}

#[test]
fn fingerprint_cases() {
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("SELECT 1", "select ?"),
        ("select   1 -- c\n", "select ?"),
        ("SELECT /* c /* nested */ */ 1", "select ?"),
        (
            "SELECT 'a', E'b\\'c', B'01', X'1F', N'x', U&'d'",
            "select ? , ? , ? , ? , ? , ?",
        ),
        ("SELECT $$a$$, $t$ $$ $t$", "select ? , ?"),
        (
            "SELECT 1, 1.5, .5, 1e10, 1.5E-3, 0x1F, 0o17, 0b101, 1_000",
            "select ? , ? , ? , ? , ? , ? , ? , ? , ?",
        ),
        (
            "SELECT * FROM t WHERE a = $1 AND b = $12",
            "select * from t where a = ? and b = ?",
        ),
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
            "select abalance from pgbench_accounts where aid = ? ;",
        ),
        ("Select X From \"MyTable\"", "select x from \"MyTable\""),
        ("SELECT \"a\"\"b\"", "select \"a\"\"b\""),
        // Only ASCII folds, as in PostgreSQL: Ä stays Ä.
        ("SELECT * FROM Ä", "select * from Ä"),
        ("SELECT * FROM ä", "select * from ä"),
        // Adjacent string constants across a newline are one constant.
        ("SELECT 'a'\n'b'", "select ?"),
        ("SELECT 'a' -- c\n 'b'", "select ?"),
        ("SELECT 'a' 'b'", "select ? ?"),
        ("SELECT 'a' /* c */\n'b'", "select ? ?"),
        ("SELECT $$a$$\n'b'", "select ? ?"),
        // UESCAPE's literal changes the identifier: kept.
        (
            "SELECT * FROM U&\"d!0061t\" UESCAPE '!'",
            "select * from U&\"d!0061t\" uescape '!'",
        ),
        // `?` operators are doubled so they never look like a literal.
        ("SELECT d ? 'k', d ?| ARRAY['a']", "select d ?? ? , d ??| array [ ? ]"),
        // Trailing junk is not a literal.
        ("SELECT 1abc", "select 1abc"),
        ("SELECT 1 abc", "select ? abc"),
        ("SELECT $1x", "select $1x"),
        ("SELECT a=-1", "select a = - ?"),
        ("SELECT x::int, y::text", "select x :: int , y :: text"),
        ("SELECT 'abc", "select 'abc"),
        ("SELECT 1 /* open", "select ? /* open"),
        ("DO $$BEGIN END$$", "do ?"),
        ("SELECT foo$$bar$$", "select foo$$bar$$"),
    ];
    for (sql, want) in cases {
        assert_eq!(fingerprint(sql), *want, "fingerprint({sql:?})");
    }
}

#[test]
fn fingerprint_ignores_only_literals_whitespace_comments_and_case() {
    let same = [
        (
            "SELECT * FROM t WHERE id = 1",
            "select *\n  from T -- x\n where ID = 99999",
        ),
        (
            "SELECT * FROM t WHERE name = 'bob'",
            "SELECT * FROM t WHERE name = $tag$alice$tag$",
        ),
        ("SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = 7"),
        ("INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (2.5, E'b')"),
    ];
    for (a, b) in same {
        assert_eq!(fingerprint(a), fingerprint(b), "{a:?} vs {b:?}");
    }
    let different = [
        ("SELECT * FROM t", "SELECT * FROM u"),
        ("SELECT * FROM t", "SELECT * FROM \"t\""),
        ("SELECT * FROM Ä", "SELECT * FROM ä"),
        ("SELECT 'a'\n'b'", "SELECT 'a' 'b'"),
        ("SELECT 1abc", "SELECT 1 abc"),
        ("SELECT d ? e", "SELECT d 'x' e"),
        ("COPY t FROM STDIN", "COPY t FROM '/tmp/f'"),
        ("COPY t TO STDOUT", "COPY t TO '/tmp/f'"),
        ("BEGIN READ WRITE", "BEGIN READ ONLY"),
        (
            "SELECT * FROM U&\"d!0061t\" UESCAPE '!'",
            "SELECT * FROM U&\"d!0061t\" UESCAPE '#'",
        ),
        ("EXPLAIN (ANALYZE) DELETE FROM t", "EXPLAIN DELETE FROM t"),
    ];
    for (a, b) in different {
        assert_ne!(fingerprint(a), fingerprint(b), "{a:?} vs {b:?}");
    }
}
