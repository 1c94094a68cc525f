"""SQLAlchemy through tdb. Run by TestDrivers (drivers/README.md).

The seed's URL scheme is postgresql+psycopg (psycopg 3), a dialect SQLAlchemy
has from 2.0 on. Debian 12 ships SQLAlchemy 1.4, which has no psycopg 3
dialect, so with 1.4 the same example runs on postgresql+psycopg2 (the line
for that check says which one ran).
"""

import time
from datetime import datetime

import sqlalchemy
from sqlalchemy import Column, DateTime, Integer, Numeric, String, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, declarative_base

from common import ROWS, check, done, env, expect, raises

SA2 = int(sqlalchemy.__version__.split(".")[0]) >= 2
SCHEME = "postgresql+psycopg" if SA2 else "postgresql+psycopg2"


def sa_url(url):
    return url.replace("postgresql://", SCHEME + "://", 1)


URL = sa_url(env("TDB_URL"))

Base = declarative_base()


class Account(Base):
    __tablename__ = 'accounts'
    id = Column(Integer, primary_key=True, autoincrement=True)
    name = Column(String(255), nullable=False)
    email = Column(String(255), unique=True, nullable=False)
    balance = Column(Numeric(15, 2), default=0)
    created_at = Column(DateTime, default=datetime.utcnow)


class Evil(Base):
    __tablename__ = 'evil'
    id = Column(Integer, primary_key=True)


def sqlstate(e):
    """The SQLSTATE and primary message of the DBAPI error inside e."""
    orig = e.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code, orig.diag.message_primary


@check(f"seed example (create_engine {SCHEME}://…?sslmode=require, Session add Alice, commit; SQLAlchemy {sqlalchemy.__version__})")
def _():
    engine = create_engine(
        URL
    )

    with Session(engine) as s:
        s.add(Account(name='Alice', email='alice@test.com', balance=1000))
        s.commit()

    with Session(engine) as s:
        alice = s.query(Account).filter_by(email='alice@test.com').one()
        expect(alice.balance == 1000 and alice.created_at is not None, f"Alice {alice.balance} {alice.created_at}")
    engine.dispose()


# The seed's pool recommendations.
engine = create_engine(URL, pool_pre_ping=True, pool_recycle=1500, pool_size=2, max_overflow=0)


@check("engine with the seed's pool settings (pool_pre_ping=True, pool_recycle=1500)")
def _():
    expect(engine.pool._pre_ping is True and engine.pool._recycle == 1500, "pool settings not applied")
    with engine.connect() as c:
        expect(c.execute(text("SELECT current_user")).scalar().endswith("_admin"), "not the admin role")


@check("parameterised queries: 200 ORM inserts, 200 bound-parameter selects")
def _():
    with Session(engine) as s:
        s.add_all([Account(name=f"p{i}", email=f"p{i}@test.com", balance=i) for i in range(200)])
        s.commit()
        q = text("SELECT balance FROM accounts WHERE email = :email")
        for i in range(200):
            expect(s.execute(q, {"email": f"p{i}@test.com"}).scalar() == i, f"p{i}")


@check("transaction rolled back leaves nothing")
def _():
    with Session(engine) as s:
        before = s.query(Account).count()
        s.add(Account(name="tx", email="tx@test.com"))
        s.query(Account).filter_by(name="Bob").delete()
        s.flush()
        s.rollback()
        after = s.query(Account).count()
    expect(before == after, f"count {before} before, {after} after rollback")


@check(f"large result streamed (stream_results=True: a server-side cursor, {ROWS} rows)")
def _():
    n = total = 0
    with engine.connect() as c:
        result = c.execution_options(stream_results=True, max_row_buffer=2000).execute(
            text("SELECT i, repeat('x', 20) FROM generate_series(1, :n) i"), {"n": ROWS})
        for i, _s in result:
            n, total = n + 1, total + i
    expect(n == ROWS and total == ROWS * (ROWS + 1) // 2, f"{n} rows, sum {total}")


@check("pool_pre_ping: a pooled connection whose backend died is replaced before use")
def _():
    eng = create_engine(URL, pool_pre_ping=True, pool_recycle=1500, pool_size=1, max_overflow=0)
    with eng.connect() as c:
        pid = c.execute(text("SELECT pg_backend_pid()")).scalar()
    with engine.connect() as killer:
        expect(killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar(), "not terminated")
    time.sleep(0.3)
    with eng.connect() as c:
        expect(c.execute(text("SELECT 1")).scalar() == 1, "no row")
    eng.dispose()


@check("pool_recycle: a connection older than pool_recycle is replaced")
def _():
    eng = create_engine(URL, pool_pre_ping=True, pool_recycle=1, pool_size=1, max_overflow=0)
    def dbapi(c):
        return c.connection.dbapi_connection if SA2 else c.connection.connection

    with eng.connect() as c:
        first = dbapi(c)
    time.sleep(1.2)
    with eng.connect() as c:
        second = dbapi(c)
        expect(c.execute(text("SELECT 1")).scalar() == 1, "no row")
    expect(first is not second and first.closed, "the old connection was reused")
    eng.dispose()


@check(f"DDL refused on a tenant (metadata.create_all): {env('TDB_MSG_DDL')}")
def _():
    e = raises(DBAPIError, Base.metadata.create_all, engine, tables=[Evil.__table__])
    code, msg = sqlstate(e)
    expect(code == "42501" and msg == env("TDB_MSG_DDL"), f"{code} {msg!r}")
    with engine.connect() as c:
        c.execute(text("SELECT 1"))


@check("connect_args options='-c statement_timeout=300' cancels pg_sleep (57014)")
def _():
    eng = create_engine(URL, connect_args={"options": "-c statement_timeout=300"})
    with eng.connect() as c:
        e = raises(OperationalError, c.execute, text("SELECT pg_sleep(30)"))
    eng.dispose()
    code, msg = sqlstate(e)
    expect(code == "57014" and msg == "canceling statement due to statement timeout", f"{code} {msg!r}")


@check("workspace key (scope workspace [myapp], role write) on a tenant of myapp: ORM insert")
def _():
    eng = create_engine(sa_url(env("TDB_URL_WORKSPACE")))
    with Session(eng) as s:
        s.add(Account(name="ws", email="sqlalchemy-ws@test.com"))
        s.commit()
    eng.dispose()


@check(f"read key: query works, ORM insert fails 42501 {env('TDB_MSG_READ_INSERT')}")
def _():
    eng = create_engine(sa_url(env("TDB_URL_READ")))
    with Session(eng) as s:
        s.query(Account).count()
        s.add(Account(name="r", email="sqlalchemy-r@test.com"))
        e = raises(DBAPIError, s.commit)
    eng.dispose()
    code, msg = sqlstate(e)
    expect(code == "42501" and msg == env("TDB_MSG_READ_INSERT"), f"{code} {msg!r}")


@check(f"project key refused on a tenant: {env('TDB_MSG_PROJECT_SCOPED')}")
def _():
    eng = create_engine(sa_url(env("TDB_URL_PROJECT")))
    e = raises(OperationalError, eng.connect)
    eng.dispose()
    expect(f"FATAL:  {env('TDB_MSG_PROJECT_SCOPED')}" in str(e.orig), str(e.orig))


engine.dispose()
done("SQLAlchemy")
