"""asyncpg through tdb. Run by TestDrivers (drivers/README.md)."""

import asyncio
import time

import asyncpg

from common import ROWS, acheck, captured, done, env, expect

URL = env("TDB_URL")


async def expect_error(exc_type, coro):
    try:
        await coro
    except exc_type as e:
        return e
    raise AssertionError(f"no {exc_type.__name__} raised")


async def seed_example():
    # The seed's example, with the URL from the environment.
    async def main():
        conn = await asyncpg.connect(
            URL
        )
        rows = await conn.fetch("SELECT id, name, balance FROM accounts")
        for row in rows:
            print(row)
        await conn.close()

    with captured() as out:
        await main()  # the seed wraps this in asyncio.run(main())
    expect("name='Bob' balance=Decimal('2000.00')>" in out.getvalue(), f"printed {out.getvalue()!r}")


async def checks():
    await acheck("seed example (asyncpg.connect, fetch SELECT id, name, balance FROM accounts)", seed_example)
    conn = await asyncpg.connect(URL)

    async def tls():
        ssl_obj = conn._transport.get_extra_info("ssl_object")  # asyncpg has no public accessor
        expect(ssl_obj is not None, "not TLS")
    await acheck("the session is TLS", tls)

    async def prepared():
        ins = await conn.prepare("INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3)")
        for i in range(200):
            await ins.fetch(f"p{i}", f"p{i}@test.com", i)
        sel = await conn.prepare("SELECT balance FROM accounts WHERE email = $1")
        for i in range(200):
            expect(await sel.fetchval(f"p{i}@test.com") == i, f"p{i}")
        await conn.executemany("UPDATE accounts SET balance = balance + $1 WHERE email = $2",
                               [(0, f"p{i}@test.com") for i in range(50)])
        n = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
        expect(n >= 2, f"pg_prepared_statements has {n} statements")
    await acheck("server-side prepared statements (conn.prepare), 200 executions each; executemany", prepared)

    async def rollback():
        before = await conn.fetchval("SELECT count(*) FROM accounts")
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO accounts (name, email) VALUES ($1, $2)", "tx", "tx@test.com")
                await conn.execute("DELETE FROM accounts WHERE name = 'Bob'")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        after = await conn.fetchval("SELECT count(*) FROM accounts")
        expect(before == after, f"count {before} before, {after} after rollback")
    await acheck("transaction rolled back leaves nothing", rollback)

    async def cursor():
        n = total = 0
        async with conn.transaction():
            async for r in conn.cursor("SELECT i, repeat('x', 20) FROM generate_series(1, $1::int) i", ROWS, prefetch=1000):
                n, total = n + 1, total + r[0]
        expect(n == ROWS and total == ROWS * (ROWS + 1) // 2, f"{n} rows, sum {total}")
    await acheck(f"large result through a cursor (portal, prefetch 1000, {ROWS} rows)", cursor)

    async def ddl():
        e = await expect_error(asyncpg.exceptions.InsufficientPrivilegeError, conn.execute("CREATE TABLE evil (id int)"))
        expect(e.sqlstate == "42501" and e.args[0] == env("TDB_MSG_DDL"), f"{e.sqlstate} {e.args[0]!r}")
        await conn.execute("SELECT 1")
    await acheck(f"DDL refused on a tenant: {env('TDB_MSG_DDL')}", ddl)

    async def cancel():
        c = await asyncpg.connect(URL)
        start = time.monotonic()
        await expect_error(asyncio.TimeoutError, asyncio.wait_for(c.execute("SELECT pg_sleep(30) /* asyncpg-cancel */"), 0.3))
        expect(time.monotonic() - start < 10, "cancel took too long")
        expect(await c.fetchval("SELECT 1") == 1, "connection unusable after cancel")
        await c.close()
        for _ in range(50):
            n = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                    "AND query LIKE '%asyncpg-cancel%' AND pid <> pg_backend_pid()")
            if n == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the cancelled pg_sleep still runs on the backend")
    await acheck("asyncio.wait_for timeout cancels pg_sleep on the backend (CancelRequest)", cancel)

    async def timeout():
        c = await asyncpg.connect(URL, server_settings={"statement_timeout": "300"})
        e = await expect_error(asyncpg.exceptions.QueryCanceledError, c.execute("SELECT pg_sleep(30)"))
        expect(e.args[0] == "canceling statement due to statement timeout", repr(e.args[0]))
        await c.close()
    await acheck("server_settings statement_timeout (startup parameter) cancels pg_sleep (57014)", timeout)

    async def prepare_then_commit():
        # asyncpg's prepare is Parse, Describe and Flush; the COMMIT that
        # follows is a Query with no Sync between them.
        c = await asyncpg.connect(URL)
        async with c.transaction():
            sel = await c.prepare("SELECT name FROM accounts WHERE email = $1")
        expect(await sel.fetchval("bob@test.com") == "Bob", "prepared statement after COMMIT")
        await c.close()
    await acheck("prepare as a transaction's last statement, then its COMMIT", prepare_then_commit)

    async def copy():
        # copy_records_to_table prepares a SELECT of the columns (Parse,
        # Describe, Flush), then sends the COPY as a Query and its data.
        c = await asyncpg.connect(URL)
        e = await expect_error(asyncpg.exceptions.FeatureNotSupportedError,
                               c.copy_records_to_table("accounts", records=[("c", "c@test.com")], columns=["name", "email"]))
        expect(e.sqlstate == "0A000" and e.args[0].startswith("COPY is not supported through the proxy"), f"{e.sqlstate} {e.args[0]!r}")
        expect(await c.fetchval("SELECT count(*) FROM accounts WHERE name = 'c'") == 0, "rows copied")
        await c.close()
    await acheck("copy_records_to_table refused with 0A000, the connection stays usable", copy)

    async def workspace():
        c = await asyncpg.connect(env("TDB_URL_WORKSPACE"))
        await c.execute("INSERT INTO accounts (name, email) VALUES ($1, $2)", "ws", "asyncpg-ws@test.com")
        await c.close()
    await acheck("workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT", workspace)

    async def read():
        c = await asyncpg.connect(env("TDB_URL_READ"))
        await c.fetchval("SELECT count(*) FROM accounts")
        e = await expect_error(asyncpg.exceptions.InsufficientPrivilegeError,
                               c.execute("INSERT INTO accounts (name, email) VALUES ($1, $2)", "r", "asyncpg-r@test.com"))
        expect(e.sqlstate == "42501" and e.args[0] == env("TDB_MSG_READ_INSERT"), f"{e.sqlstate} {e.args[0]!r}")
        await c.close()
    await acheck(f"read key: SELECT works, INSERT fails 42501 {env('TDB_MSG_READ_INSERT')}", read)

    async def project():
        e = await expect_error(asyncpg.exceptions.PostgresError, asyncpg.connect(env("TDB_URL_PROJECT")))
        expect(e.sqlstate == "28000" and e.args[0] == env("TDB_MSG_PROJECT_SCOPED"), f"{e.sqlstate} {e.args[0]!r}")
    await acheck(f"project key refused on a tenant: {env('TDB_MSG_PROJECT_SCOPED')}", project)

    async def pool():
        async with asyncpg.create_pool(URL, min_size=1, max_size=4, max_inactive_connection_lifetime=1500) as p:
            counts = await asyncio.gather(*(p.fetchval("SELECT count(*) FROM accounts WHERE balance >= $1", i) for i in range(40)))
            expect(len(counts) == 40, "not all queries ran")
    await acheck("create_pool (max 4, max_inactive_connection_lifetime 1500): 40 concurrent queries", pool)

    await conn.close()


asyncio.run(checks())
done("asyncpg")
