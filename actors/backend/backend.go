package backend

import (
	"cmp"
	"context"
	"slices"
	"unicode/utf8"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// Kind is the kind of a physical database; it decides who may run DDL.
type Kind string

const (
	// KindTenant is a tenant database: only the owner role (deployments)
	// runs DDL; the login roles do DML or SELECT.
	KindTenant Kind = "tenant"
	// KindWorkspace is a tenant workspace: the admin role also runs DDL,
	// and what it creates is usable by the write and read roles.
	KindWorkspace Kind = "workspace"
	// KindControl is the control workspace: privileges as KindWorkspace.
	KindControl Kind = "control"
)

// Passwords are the passwords of a database's three login roles.
type Passwords struct{ Admin, Write, Read string }

// DatabaseSpec describes one physical database to provision.
type DatabaseSpec struct {
	Name      string
	Kind      Kind
	Passwords Passwords
	// Guard is the version of the guard to install (InstallGuard); 0 is
	// GuardVersion.
	Guard int
}

// Role suffixes: RoleName(db, RoleAdmin) is the role the proxy logs in as
// for an admin key, and so on. RoleOwner cannot log in.
const (
	RoleOwner = "owner"
	RoleAdmin = "admin"
	RoleWrite = "write"
	RoleRead  = "read"
)

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer names are truncated
// silently, which would make distinct databases share roles.
const maxIdentLen = 63

// MaxNameLen is the longest database name whose role names still fit.
const MaxNameLen = maxIdentLen - len("_"+RoleOwner)

// ErrInvalidSpec marks a DatabaseSpec or database name that Ensure or Drop
// refuses.
var ErrInvalidSpec = errors.New("invalid database spec")

// reserved names are databases of the server itself, never tdb's.
var reserved = []string{"postgres", "template0", "template1"}

// CaptureLockKey names the advisory lock, in a tenant workspace's database,
// that whatever records the workspace's DDL as blueprint versions (the
// proxy's sessions, the schema endpoint) holds from its first DDL until the
// version is recorded, so versions are recorded in commit order.
const CaptureLockKey = 0x7464625f63617074 // "tdb_capt"

// RoleName is the native role of database db for role (admin, write, read
// or owner): db + "_" + role.
func RoleName(db, role string) string { return db + "_" + role }

func checkName(db string) error {
	switch {
	case db == "":
		return errors.Mark(errors.New("database name is empty"), ErrInvalidSpec)
	case len(db) > MaxNameLen:
		return errors.Mark(errors.Newf("database name %q is longer than %d bytes", db, MaxNameLen), ErrInvalidSpec)
	case !utf8.ValidString(db) || slices.Contains([]byte(db), 0):
		return errors.Mark(errors.Newf("database name %q is not valid UTF-8 without NUL", db), ErrInvalidSpec)
	case slices.Contains(reserved, db):
		return errors.Mark(errors.Newf("database name %q is reserved", db), ErrInvalidSpec)
	}
	return nil
}

func (s DatabaseSpec) validate() error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	switch s.Kind {
	case KindTenant, KindWorkspace, KindControl:
	default:
		return errors.Mark(errors.Newf("database %s: unknown kind %q", s.Name, s.Kind), ErrInvalidSpec)
	}
	if s.Passwords.Admin == "" || s.Passwords.Write == "" || s.Passwords.Read == "" {
		return errors.Mark(errors.Newf("database %s: every role needs a password", s.Name), ErrInvalidSpec)
	}
	return nil
}

// Ensure provisions spec on the server at superuserURL: its roles, the
// database, and the grants of its kind. Every step checks or converges, so
// Ensure can be rerun after a partial failure, and a rerun with new
// passwords sets them.
func Ensure(ctx context.Context, superuserURL string, spec DatabaseSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	conn, err := connect(ctx, superuserURL, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := ensureRoles(ctx, conn, spec); err != nil {
		return err
	}
	if err := ensureDatabase(ctx, conn, spec.Name); err != nil {
		return err
	}
	dbConn, err := connect(ctx, superuserURL, spec.Name)
	if err != nil {
		return err
	}
	defer dbConn.Close(context.Background())
	err = pgx.BeginFunc(ctx, dbConn, func(tx pgx.Tx) error {
		if err := execAll(ctx, tx, grantStatements(spec.Name, spec.Kind, cmp.Or(spec.Guard, GuardVersion))); err != nil {
			return err
		}
		if err := grantSideEffects(ctx, tx, spec.Name); err != nil {
			return err
		}
		return takeLargeObjects(ctx, tx, spec.Name)
	})
	return errors.Wrapf(err, "grant privileges in database %s", spec.Name)
}

// Drop removes database db and its roles: its sessions (and those of its
// roles) are terminated first. Dropping what does not exist is not an error.
func Drop(ctx context.Context, superuserURL, db string) error {
	if err := checkName(db); err != nil {
		return err
	}
	conn, err := connect(ctx, superuserURL, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	roles := []string{RoleName(db, RoleAdmin), RoleName(db, RoleWrite), RoleName(db, RoleRead), RoleName(db, RoleOwner)}
	if _, err := conn.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE (datname = $1 OR usename = ANY($2)) AND pid <> pg_backend_pid()`, db, roles); err != nil {
		return errors.Wrapf(err, "terminate sessions of database %s", db)
	}
	drop := "DROP DATABASE IF EXISTS " + ident(db)
	if serverVersionNum(ctx, conn) >= 130000 {
		drop += " WITH (FORCE)" // also ends sessions that connected meanwhile
	}
	if _, err := conn.Exec(ctx, drop); err != nil {
		return errors.Wrapf(err, "drop database %s", db)
	}
	for _, r := range roles {
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident(r)); err != nil {
			return errors.Wrapf(err, "drop role %s", r)
		}
	}
	return nil
}

// Ping connects to the server and returns its version (e.g. "15.18").
func Ping(ctx context.Context, superuserURL string) (serverVersion string, err error) {
	conn, err := connect(ctx, superuserURL, "")
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&serverVersion); err != nil {
		return "", errors.Wrap(err, "show server_version")
	}
	return serverVersion, nil
}

// ErrNotSuperuser marks Check's error for a server the URL's role cannot
// manage: it is not a superuser there.
var ErrNotSuperuser = errors.New("not a superuser")

// Check tells whether a server can be registered as a backend: the URL
// reaches it and its role is a superuser there (it creates databases and
// roles and grants on them).
func Check(ctx context.Context, superuserURL string) error {
	conn, err := connect(ctx, superuserURL, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var role string
	var super bool
	if err := conn.QueryRow(ctx, "SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&role, &super); err != nil {
		return errors.Wrap(err, "read the role's attributes")
	}
	if !super {
		return errors.Mark(errors.Newf("role %q is not a superuser on the server", role), ErrNotSuperuser)
	}
	return nil
}

// RunAsOwner runs fn in a transaction in database db as its owner role, so
// that what fn creates belongs to the owner (and gets the default
// privileges Ensure set up). fn's error is returned as is, after rollback.
func RunAsOwner(ctx context.Context, superuserURL, db string, fn func(pgx.Tx) error) error {
	if err := checkName(db); err != nil {
		return err
	}
	conn, err := connect(ctx, superuserURL, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	owner := RoleName(db, RoleOwner)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+ident(owner)); err != nil {
			return errors.Wrapf(err, "set role %s", owner)
		}
		return fn(tx)
	})
}

func serverVersionNum(ctx context.Context, conn *pgx.Conn) int {
	var n int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&n); err != nil {
		return 0
	}
	return n
}
