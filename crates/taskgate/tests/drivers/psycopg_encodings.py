"""psycopg 3 through the gateway under the client encodings and string
settings psycopg's own test suite sets: each encoding round-trips text as a
parameter, as a literal in the statement and as a column name; with
standard_conforming_strings off a backslash escapes in a plain string, and
a write hidden behind such a string is read, and refused, as the server
reads it. Connection details come from the environment (TG_HOST, TG_PORT,
TG_USER, TG_PASSWORD, TG_DB). Prints one line per check; exits non-zero on
failure."""
import os
import sys

import psycopg
from psycopg import ClientCursor

conninfo = dict(
    host=os.environ["TG_HOST"],
    port=os.environ["TG_PORT"],
    user=os.environ["TG_USER"],
    password=os.environ["TG_PASSWORD"],
    dbname=os.environ["TG_DB"],
    sslmode="disable",
    autocommit=True,
)


def check(got, want, what):
    # Under SQL_ASCII psycopg hands back bytes: the server did not convert.
    if isinstance(got, bytes):
        got = got.decode()
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


CASES = [
    ("latin1", "café crème"),
    ("LATIN9", "€uro"),
    ("EUC_JP", "さくら"),
    ("WIN1252", "naïve €"),
    ("ISO_8859_5", "Привет"),
    ("SQL_ASCII", "plain"),
]

with psycopg.connect(**conninfo) as conn:
    for encoding, text in CASES:
        conn.execute(f"SET client_encoding TO {encoding}")
        param = conn.execute("SELECT %s::text", [text]).fetchone()[0]
        check(param, text, f"{encoding} parameter")
        cur = conn.execute(f"SELECT '{text}'::text AS \"{text}\"")
        check(cur.fetchone()[0], text, f"{encoding} literal")
        check(cur.description[0].name, text, f"{encoding} column name")
        with ClientCursor(conn) as cc:
            cc.execute("SELECT %s", [text])
            check(cc.fetchone()[0], text, f"{encoding} client-side literal")
        print("encoding", encoding, "ok")
    conn.execute("RESET client_encoding")
    check(conn.execute("SHOW client_encoding").fetchone()[0], "UTF8", "reset")

    conn.execute("SET standard_conforming_strings TO off")
    check(conn.execute("SELECT 'it\\'s'").fetchone()[0], "it's", "backslash escape")
    with ClientCursor(conn) as cc:
        tricky = "back\\slash 'quoted'"
        cc.execute("SELECT %s", [tricky])
        check(cc.fetchone()[0], tricky, "client-side literal with strings off")
        try:
            cc.execute(
                "SELECT 'x\\' AS a, ' ; UPDATE customers SET name = $$pwned$$ WHERE id = 1; --' AS b"
            )
            sys.exit("the write hidden behind a backslash string was not refused")
        except psycopg.errors.InsufficientPrivilege as e:
            print("hidden write refused", e.sqlstate)
    conn.execute("SET standard_conforming_strings TO on")
    check(conn.execute("SELECT 'a\\'").fetchone()[0], "a\\", "strings on again")
    print("strings ok")
