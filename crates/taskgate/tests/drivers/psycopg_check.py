"""psycopg 3 through the gateway: simple, parameterized (server-side
binding), a transaction, a prepared statement, and a refused statement.
Connection details come from the environment (TG_HOST, TG_PORT, TG_USER,
TG_PASSWORD, TG_DB). Prints one line per check; exits non-zero on failure."""
import os
import sys

import psycopg

conninfo = dict(
    host=os.environ["TG_HOST"],
    port=os.environ["TG_PORT"],
    user=os.environ["TG_USER"],
    password=os.environ["TG_PASSWORD"],
    dbname=os.environ["TG_DB"],
    application_name="psycopg-check",
    sslmode="disable",
)
with psycopg.connect(**conninfo) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        print("count", cur.fetchone()[0])
        cur.execute("SELECT item FROM orders WHERE qty >= %s ORDER BY id", (3,))
        print("items", [r[0] for r in cur.fetchall()])
        cur.execute("INSERT INTO orders (item, qty) VALUES (%s, %s)", ("psycopg-row", 9))
    conn.commit()
    with conn.cursor() as cur:
        for qty in (1, 2, 3):
            cur.execute("SELECT count(*) FROM orders WHERE qty > %s", (qty,), prepare=True)
        try:
            cur.execute("DROP TABLE orders")
            sys.exit("DROP was not refused")
        except psycopg.errors.InsufficientPrivilege as e:
            print("refused", e.sqlstate)
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        print("after refusal", cur.fetchone()[0])
