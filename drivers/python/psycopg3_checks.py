"""psycopg 3 through tdb. Run by TestDrivers (drivers/README.md)."""

import threading
import time

import psycopg
from psycopg import errors

from common import ROWS, captured, check, done, env, expect, raises

URL = env("TDB_URL")


@check("seed example (psycopg.connect, cursor, SELECT id, name, balance FROM accounts)")
def _():
    with captured() as out:
        # The seed's example, with the URL from the environment.
        with psycopg.connect(
            URL
        ) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT id, name, balance FROM accounts")
                for row in cur.fetchall():
                    print(row)
    expect("'Bob', Decimal('2000.00'))" in out.getvalue(), f"printed {out.getvalue()!r}")


conn = psycopg.connect(URL, autocommit=True)


@check("the session is TLS, as the tenant's admin role")
def _():
    expect(conn.pgconn.ssl_in_use, "not TLS")
    user = conn.execute("SELECT current_user").fetchone()[0]
    expect(user.endswith("_admin"), f"current_user {user}")


@check("server-side prepared statements (prepare=True), 200 executions each")
def _():
    with conn.cursor() as cur:
        for i in range(200):
            cur.execute("INSERT INTO accounts (name, email, balance) VALUES (%s, %s, %s)",
                        (f"p{i}", f"p{i}@test.com", i), prepare=True)
        for i in range(200):
            cur.execute("SELECT balance FROM accounts WHERE email = %s", (f"p{i}@test.com",), prepare=True)
            expect(cur.fetchone()[0] == i, f"p{i}")
        n = cur.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        expect(n >= 2, f"pg_prepared_statements has {n} statements")


@check("transaction rolled back leaves nothing")
def _():
    before = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
    with conn.transaction() as tx:
        conn.execute("INSERT INTO accounts (name, email) VALUES (%s, %s)", ("tx", "tx@test.com"))
        conn.execute("DELETE FROM accounts WHERE name = 'Bob'")
        raise psycopg.Rollback(tx)
    after = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
    expect(before == after, f"count {before} before, {after} after rollback")


@check(f"large result in single-row mode (cursor.stream, {ROWS} rows)")
def _():
    n = total = 0
    with conn.cursor() as cur:
        for i, _s in cur.stream("SELECT i, repeat('x', 20) FROM generate_series(1, %s) i", (ROWS,)):
            n, total = n + 1, total + i
    expect(n == ROWS and total == ROWS * (ROWS + 1) // 2, f"{n} rows, sum {total}")


@check(f"large result through a server-side cursor (named cursor, itersize 2000, {ROWS} rows)")
def _():
    n = 0
    with psycopg.connect(URL) as c:  # a named cursor lives in a transaction
        with c.cursor(name="big") as cur:
            cur.itersize = 2000
            cur.execute("SELECT i FROM generate_series(1, %s) i", (ROWS,))
            for _row in cur:
                n += 1
    expect(n == ROWS, f"{n} rows")


@check(f"DDL refused on a tenant: {env('TDB_MSG_DDL')}")
def _():
    e = raises(errors.InsufficientPrivilege, conn.execute, "CREATE TABLE evil (id int)")
    expect(e.sqlstate == "42501" and e.diag.message_primary == env("TDB_MSG_DDL"), f"{e.sqlstate} {e.diag.message_primary!r}")
    conn.execute("SELECT 1")


@check("connection.cancel() from another thread stops pg_sleep (CancelRequest, 57014)")
def _():
    with psycopg.connect(URL) as c:
        threading.Timer(0.3, c.cancel).start()
        start = time.monotonic()
        e = raises(errors.QueryCanceled, c.execute, "SELECT pg_sleep(30)")
        expect(time.monotonic() - start < 10, "cancel took too long")
        expect(e.diag.message_primary == "canceling statement due to user request", repr(e.diag.message_primary))


@check("options='-c statement_timeout=300' (startup parameter) cancels pg_sleep (57014)")
def _():
    with psycopg.connect(URL, options="-c statement_timeout=300") as c:
        e = raises(errors.QueryCanceled, c.execute, "SELECT pg_sleep(30)")
        expect(e.diag.message_primary == "canceling statement due to statement timeout", repr(e.diag.message_primary))


@check("workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT")
def _():
    with psycopg.connect(env("TDB_URL_WORKSPACE")) as c:
        c.execute("INSERT INTO accounts (name, email) VALUES (%s, %s)", ("ws", "psycopg-ws@test.com"))
        user = c.execute("SELECT current_user").fetchone()[0]
        expect(user.endswith("_write"), f"current_user {user}")


@check(f"read key: SELECT works, INSERT fails 42501 {env('TDB_MSG_READ_INSERT')}")
def _():
    with psycopg.connect(env("TDB_URL_READ")) as c:
        c.execute("SELECT count(*) FROM accounts").fetchone()
        e = raises(errors.InsufficientPrivilege, c.execute,
                   "INSERT INTO accounts (name, email) VALUES (%s, %s)", ("r", "psycopg-r@test.com"))
        expect(e.sqlstate == "42501" and e.diag.message_primary == env("TDB_MSG_READ_INSERT"),
               f"{e.sqlstate} {e.diag.message_primary!r}")


@check(f"project key refused on a tenant: {env('TDB_MSG_PROJECT_SCOPED')}")
def _():
    e = raises(psycopg.OperationalError, psycopg.connect, env("TDB_URL_PROJECT"))
    expect(f"FATAL:  {env('TDB_MSG_PROJECT_SCOPED')}" in str(e), str(e))


conn.close()
done("psycopg 3")
