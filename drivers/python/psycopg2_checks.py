"""psycopg2 through tdb. Run by TestDrivers (drivers/README.md)."""

import threading
import time

import psycopg2
from psycopg2 import errors

from common import ROWS, captured, check, done, env, expect, raises

URL = env("TDB_URL")


@check("seed example with psycopg2 (connect, cursor, SELECT id, name, balance FROM accounts)")
def _():
    # The seed's psycopg example, on psycopg2 (whose connection's `with` ends
    # the transaction without closing it).
    with captured() as out:
        with psycopg2.connect(
            URL
        ) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT id, name, balance FROM accounts")
                for row in cur.fetchall():
                    print(row)
        conn.close()
    expect("'Bob', Decimal('2000.00'))" in out.getvalue(), f"printed {out.getvalue()!r}")


conn = psycopg2.connect(URL)
conn.autocommit = True


def one(sql, args=None, c=None):
    with (c or conn).cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


@check("the session is TLS, as the tenant's admin role")
def _():
    expect(conn.info.ssl_in_use, "not TLS")
    user = one("SELECT current_user")
    expect(user.endswith("_admin"), f"current_user {user}")


@check("parameters (client-side binding) 200 inserts; PREPARE/EXECUTE (server-side) 200 executions")
def _():
    with conn.cursor() as cur:
        for i in range(200):
            cur.execute("INSERT INTO accounts (name, email, balance) VALUES (%s, %s, %s)", (f"p{i}", f"p{i}@test.com", i))
        cur.execute("PREPARE bal(text) AS SELECT balance FROM accounts WHERE email = $1")
        for i in range(200):
            cur.execute("EXECUTE bal(%s)", (f"p{i}@test.com",))
            expect(cur.fetchone()[0] == i, f"p{i}")
        cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = 'bal'")
        expect(cur.fetchone()[0] == 1, "bal is not in pg_prepared_statements")
        cur.execute("DEALLOCATE bal")


@check("transaction rolled back leaves nothing")
def _():
    before = one("SELECT count(*) FROM accounts")
    c = psycopg2.connect(URL)
    with c.cursor() as cur:
        cur.execute("INSERT INTO accounts (name, email) VALUES (%s, %s)", ("tx", "tx@test.com"))
        cur.execute("DELETE FROM accounts WHERE name = 'Bob'")
    c.rollback()
    c.close()
    after = one("SELECT count(*) FROM accounts")
    expect(before == after, f"count {before} before, {after} after rollback")


@check(f"large result through a server-side cursor (named cursor, itersize 2000, {ROWS} rows)")
def _():
    n = total = 0
    with psycopg2.connect(URL) as c:
        with c.cursor(name="big") as cur:
            cur.itersize = 2000
            cur.execute("SELECT i, repeat('x', 20) FROM generate_series(1, %s) i", (ROWS,))
            for i, _s in cur:
                n, total = n + 1, total + i
    c.close()
    expect(n == ROWS and total == ROWS * (ROWS + 1) // 2, f"{n} rows, sum {total}")


@check(f"DDL refused on a tenant: {env('TDB_MSG_DDL')}")
def _():
    with conn.cursor() as cur:
        e = raises(errors.InsufficientPrivilege, cur.execute, "CREATE TABLE evil (id int)")
    expect(e.pgcode == "42501" and e.diag.message_primary == env("TDB_MSG_DDL"), f"{e.pgcode} {e.diag.message_primary!r}")
    one("SELECT 1")


@check("connection.cancel() from another thread stops pg_sleep (CancelRequest, 57014)")
def _():
    c = psycopg2.connect(URL)
    threading.Timer(0.3, c.cancel).start()
    start = time.monotonic()
    with c.cursor() as cur:
        e = raises(errors.QueryCanceled, cur.execute, "SELECT pg_sleep(30)")
    c.close()
    expect(time.monotonic() - start < 10, "cancel took too long")
    expect(e.diag.message_primary == "canceling statement due to user request", repr(e.diag.message_primary))


@check("options='-c statement_timeout=300' (startup parameter) cancels pg_sleep (57014)")
def _():
    c = psycopg2.connect(URL, options="-c statement_timeout=300")
    with c.cursor() as cur:
        e = raises(errors.QueryCanceled, cur.execute, "SELECT pg_sleep(30)")
    c.close()
    expect(e.diag.message_primary == "canceling statement due to statement timeout", repr(e.diag.message_primary))


@check("workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT")
def _():
    c = psycopg2.connect(env("TDB_URL_WORKSPACE"))
    with c.cursor() as cur:
        cur.execute("INSERT INTO accounts (name, email) VALUES (%s, %s)", ("ws", "psycopg2-ws@test.com"))
    c.commit()
    c.close()


@check(f"read key: SELECT works, INSERT fails 42501 {env('TDB_MSG_READ_INSERT')}")
def _():
    c = psycopg2.connect(env("TDB_URL_READ"))
    one("SELECT count(*) FROM accounts", c=c)
    with c.cursor() as cur:
        e = raises(errors.InsufficientPrivilege, cur.execute,
                   "INSERT INTO accounts (name, email) VALUES (%s, %s)", ("r", "psycopg2-r@test.com"))
    c.close()
    expect(e.pgcode == "42501" and e.diag.message_primary == env("TDB_MSG_READ_INSERT"), f"{e.pgcode} {e.diag.message_primary!r}")


@check(f"project key refused on a tenant: {env('TDB_MSG_PROJECT_SCOPED')}")
def _():
    e = raises(psycopg2.OperationalError, psycopg2.connect, env("TDB_URL_PROJECT"))
    expect(f"FATAL:  {env('TDB_MSG_PROJECT_SCOPED')}" in str(e), str(e))


conn.close()
done("psycopg2")
