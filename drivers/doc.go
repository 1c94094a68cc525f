// Package drivers is tdb's driver compatibility suite. Its one test,
// TestDrivers, starts a node with a real PostgreSQL backend and, for every
// driver the product documentation shows (psql, pgx, database/sql,
// node-postgres, Sequelize, Knex, Prisma, psycopg 3, psycopg2, asyncpg,
// SQLAlchemy, pgJDBC, ruby-pg), runs a program of checks through the wire
// proxy with TLS, each on a tenant of its own. The programs live in the
// language directories beside this file (the Go ones are in the test itself);
// each prints one line per check and exits non-zero on any failure. The run
// ends with a per-driver table. README.md says how to run it.
package drivers
