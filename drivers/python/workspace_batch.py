"""psycopg 3's pipeline with DDL behind another statement, in a tenant
workspace. Run by TestWorkspaceDDLBatches (drivers/README.md): TDB_URL is the
workspace's database, TDB_TABLE a table another session is creating in a
transaction still open, TDB_MODE autocommit or transaction."""

import psycopg

from common import check, done, env

URL, TABLE, MODE = env("TDB_URL"), env("TDB_TABLE"), env("TDB_MODE")


@check(f"psycopg pipeline ({MODE}): SELECT, then ALTER TABLE and CREATE INDEX on {TABLE}")
def _():
    with psycopg.connect(URL, autocommit=MODE == "autocommit") as conn:
        with conn.pipeline():
            conn.execute("SELECT 1")
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN c int")
            conn.execute(f"CREATE INDEX ON {TABLE} (c)")
        conn.commit()


done("psycopg 3 workspace batch")
