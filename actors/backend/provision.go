package backend

import (
	"context"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// roleAttrs are the attributes every role of a database gets: no special
// powers, and no inheritance (a login role is never a member of another).
const roleAttrs = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT -1"

// ensureRoles creates the owner and login roles, or brings existing ones
// back to the wanted attributes and passwords.
func ensureRoles(ctx context.Context, conn *pgx.Conn, spec DatabaseSpec) error {
	type role struct{ name, password string }
	roles := []role{
		{RoleName(spec.Name, RoleOwner), ""},
		{RoleName(spec.Name, RoleAdmin), spec.Passwords.Admin},
		{RoleName(spec.Name, RoleWrite), spec.Passwords.Write},
		{RoleName(spec.Name, RoleRead), spec.Passwords.Read},
	}
	for _, r := range roles {
		attrs := "NOLOGIN PASSWORD NULL " + roleAttrs
		if r.password != "" {
			lit, err := literal(r.password)
			if err != nil {
				return errors.Mark(errors.Wrapf(err, "password of role %s", r.name), ErrInvalidSpec)
			}
			attrs = "LOGIN PASSWORD " + lit + " " + roleAttrs
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", r.name).Scan(&exists); err != nil {
			return errors.Wrapf(err, "look up role %s", r.name)
		}
		// The statements carry a password: errors name the role only.
		if !exists {
			_, err := conn.Exec(ctx, "CREATE ROLE "+ident(r.name)+" WITH "+attrs)
			if err == nil {
				continue
			}
			if !isCode(err, "42710", "23505") { // created concurrently: converge below
				return errors.Wrapf(err, "create role %s", r.name)
			}
		}
		if _, err := conn.Exec(ctx, "ALTER ROLE "+ident(r.name)+" WITH "+attrs); err != nil {
			return errors.Wrapf(err, "alter role %s", r.name)
		}
		// Settings a role gave itself (ALTER ROLE CURRENT_USER SET …) go.
		if _, err := conn.Exec(ctx, "ALTER ROLE "+ident(r.name)+" RESET ALL"); err != nil {
			return errors.Wrapf(err, "reset settings of role %s", r.name)
		}
	}
	return nil
}

// ensureDatabase creates database db owned by its owner role, or gives an
// existing one back to it, and lets only the three login roles connect.
func ensureDatabase(ctx context.Context, conn *pgx.Conn, db string) error {
	owner := RoleName(db, RoleOwner)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return errors.Wrapf(err, "look up database %s", db)
	}
	if !exists {
		// Not in a transaction: CREATE DATABASE cannot run in one.
		_, err := conn.Exec(ctx, "CREATE DATABASE "+ident(db)+" OWNER "+ident(owner)+" TEMPLATE template0")
		if err != nil && !isCode(err, "42P04") {
			return errors.Wrapf(err, "create database %s", db)
		}
	}
	logins := idents(RoleName(db, RoleAdmin), RoleName(db, RoleWrite), RoleName(db, RoleRead))
	return errors.Wrapf(execAll(ctx, conn, []string{
		"ALTER DATABASE " + ident(db) + " OWNER TO " + ident(owner),
		"REVOKE CONNECT, TEMPORARY ON DATABASE " + ident(db) + " FROM PUBLIC",

		"REVOKE CREATE, TEMPORARY ON DATABASE " + ident(db) + " FROM " + logins,
		"GRANT CONNECT ON DATABASE " + ident(db) + " TO " + logins,
	}), "database %s", db)
}

func isCode(err error, codes ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	for _, c := range codes {
		if pgErr.Code == c {
			return true
		}
	}
	return false
}
