package backend_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/actors/backend"
	"tdb/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

var ctx = context.Background()

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func passwords() backend.Passwords {
	return backend.Passwords{Admin: "a" + randHex(8), Write: "w" + randHex(8), Read: "r" + randHex(8)}
}

// fixture is one provisioned database on the shared server.
type fixture struct {
	t    *testing.T
	url  string // superuser
	spec backend.DatabaseSpec
}

// provision ensures a fresh database of kind (named prefix + random) and
// drops it when t ends.
func provision(t *testing.T, prefix string, kind backend.Kind) *fixture {
	t.Helper()
	f := &fixture{t: t, url: testpg.Shared(t).URL(),
		spec: backend.DatabaseSpec{Name: prefix + randHex(4), Kind: kind, Passwords: passwords()}}
	if err := backend.Ensure(ctx, f.url, f.spec); err != nil {
		t.Fatalf("Ensure %s: %v", f.spec.Name, err)
	}
	t.Cleanup(func() {
		if err := backend.Drop(ctx, f.url, f.spec.Name); err != nil {
			t.Errorf("Drop %s: %v", f.spec.Name, err)
		}
	})
	return f
}

func (f *fixture) password(role string) string {
	switch role {
	case backend.RoleAdmin:
		return f.spec.Passwords.Admin
	case backend.RoleWrite:
		return f.spec.Passwords.Write
	case backend.RoleRead:
		return f.spec.Passwords.Read
	}
	f.t.Fatalf("no password for role %s", role)
	return ""
}

// dial connects as user/password to database db of the shared server.
func dial(t *testing.T, superuserURL, db, user, password string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(superuserURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database, cfg.User, cfg.Password = db, user, password
	return pgx.ConnectConfig(ctx, cfg)
}

// as connects to the fixture's database as its login role role.
func (f *fixture) as(role string) *pgx.Conn {
	f.t.Helper()
	conn, err := dial(f.t, f.url, f.spec.Name, backend.RoleName(f.spec.Name, role), f.password(role))
	if err != nil {
		f.t.Fatalf("connect as %s: %v", role, err)
	}
	f.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// super connects to the fixture's database as the superuser.
func (f *fixture) super() *pgx.Conn {
	f.t.Helper()
	conn, err := dial(f.t, f.url, f.spec.Name, "postgres", mustPassword(f.t, f.url))
	if err != nil {
		f.t.Fatalf("connect as superuser: %v", err)
	}
	f.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustPassword(t *testing.T, url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Password
}

func (f *fixture) asOwner(sql string) {
	f.t.Helper()
	err := backend.RunAsOwner(ctx, f.url, f.spec.Name, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql)
		return err
	})
	if err != nil {
		f.t.Fatalf("as owner: %s: %v", sql, err)
	}
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("as %s: %s: %v", conn.Config().User, sql, err)
	}
}

// denied runs sql and wants SQLSTATE 42501 with a message matching msg.
func denied(t *testing.T, conn *pgx.Conn, sql, msg string) {
	t.Helper()
	_, err := conn.Exec(ctx, sql)
	wantCode(t, err, "42501", msg)
}

func wantCode(t *testing.T, err error, code, msg string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("want SQLSTATE %s (%s), got %v", code, msg, err)
	}
	if pgErr.Code != code || !regexp.MustCompile(msg).MatchString(pgErr.Message) {
		t.Fatalf("want SQLSTATE %s matching %q, got %s %q", code, msg, pgErr.Code, pgErr.Message)
	}
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	for _, kind := range []backend.Kind{backend.KindTenant, backend.KindWorkspace, backend.KindControl} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := provision(t, "idem_", kind)
			if err := backend.Ensure(ctx, f.url, f.spec); err != nil {
				t.Fatalf("second Ensure: %v", err)
			}
			db := f.spec.Name
			// The DDL guard leaves the superuser's own DDL alone, whatever
			// schemas its search_path selects.
			u, err := url.Parse(f.url)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("search_path", "information_schema, public")
			u.RawQuery = q.Encode()
			if err := backend.Ensure(ctx, u.String(), f.spec); err != nil {
				t.Fatalf("Ensure with the superuser's search_path on information_schema: %v", err)
			}
			if backend.HasGuard(kind) {
				if err := backend.InstallGuard(ctx, u.String(), db, kind, backend.GuardVersion); err != nil {
					t.Fatalf("InstallGuard with the superuser's search_path on information_schema: %v", err)
				}
			}
			su := f.super()
			if got := queryString(t, su, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", db); got != backend.RoleName(db, "owner") {
				t.Errorf("database owner %s", got)
			}
			if got := queryString(t, su, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"); got != backend.RoleName(db, "owner") {
				t.Errorf("schema public owner %s", got)
			}
			got := queryString(t, su, `SELECT string_agg(rolname || ':' || rolcanlogin || rolsuper || rolcreatedb || rolcreaterole || rolinherit, ',' ORDER BY rolname)
				FROM pg_roles WHERE rolname LIKE $1`, db+"\\_%")
			want := strings.NewReplacer("DB", db).Replace("DB_admin:truefalsefalsefalsefalse,DB_owner:falsefalsefalsefalsefalse,DB_read:truefalsefalsefalsefalse,DB_write:truefalsefalsefalsefalse")
			if got != want {
				t.Errorf("roles:\n got %s\nwant %s", got, want)
			}

			// A rerun with new passwords converges to them.
			old := f.spec.Passwords
			f.spec.Passwords = passwords()
			if err := backend.Ensure(ctx, f.url, f.spec); err != nil {
				t.Fatalf("Ensure with new passwords: %v", err)
			}
			_, err = dial(t, f.url, db, backend.RoleName(db, "admin"), old.Admin)
			wantCode(t, err, "28P01", "password authentication failed")
			mustExec(t, f.as("admin"), "SELECT 1")
		})
	}
}

func TestReadCannotWrite(t *testing.T) {
	t.Parallel()
	f := provision(t, "ro_", backend.KindTenant)
	f.asOwner("CREATE TABLE items (id serial PRIMARY KEY, v text); INSERT INTO items (v) VALUES ('a')")
	read := f.as("read")
	if n := queryString(t, read, "SELECT count(*)::text FROM items"); n != "1" {
		t.Errorf("read sees %s rows, want 1", n)
	}
	denied(t, read, "INSERT INTO items (v) VALUES ('b')", `^permission denied for table items$`)
	denied(t, read, "UPDATE items SET v = 'c'", `^permission denied for table items$`)
	denied(t, read, "DELETE FROM items", `^permission denied for table items$`)
	denied(t, read, "SELECT nextval('items_id_seq')", `^permission denied for sequence items_id_seq$`)
}

func TestWriteOnExistingAndFutureTables(t *testing.T) {
	t.Parallel()
	f := provision(t, "rw_", backend.KindTenant)
	// A table that is not the owner's and predates a rerun: default
	// privileges do not cover it, only Ensure's grants on existing objects.
	mustExec(t, f.super(), "CREATE TABLE pre (id serial PRIMARY KEY, v text)")
	denied(t, f.as("write"), "INSERT INTO pre (v) VALUES ('x')", "permission denied")
	if err := backend.Ensure(ctx, f.url, f.spec); err != nil {
		t.Fatal(err)
	}
	write := f.as("write")
	mustExec(t, write, "INSERT INTO pre (v) VALUES ('x')")

	// Created by a deployment after Ensure: default privileges.
	f.asOwner("CREATE TABLE post (id serial PRIMARY KEY, v text)")
	if o := queryString(t, f.super(), "SELECT tableowner::text FROM pg_tables WHERE tablename = 'post'"); o != backend.RoleName(f.spec.Name, "owner") {
		t.Errorf("post is owned by %s", o)
	}
	mustExec(t, write, "INSERT INTO post (v) VALUES ('x')")
	mustExec(t, write, "UPDATE post SET v = 'y'")
	mustExec(t, write, "DELETE FROM post")
	denied(t, write, "TRUNCATE post", "permission denied for table post")
	read := f.as("read")
	mustExec(t, read, "SELECT * FROM post")
	denied(t, read, "INSERT INTO post (v) VALUES ('x')", "permission denied for table post")
	admin := f.as("admin")
	mustExec(t, admin, "INSERT INTO post (v) VALUES ('x')")
	mustExec(t, admin, "TRUNCATE post")
}

func TestTenantLoginRolesCannotRunDDL(t *testing.T) {
	t.Parallel()
	f := provision(t, "ten_", backend.KindTenant)
	f.asOwner("CREATE TABLE owned (id int)")
	// The guard refuses the login roles' DDL before PostgreSQL looks at
	// privileges...
	for _, role := range []string{"admin", "write", "read"} {
		for _, sql := range []string{"CREATE TABLE t (id int)", "ALTER TABLE owned ADD COLUMN x int", "CREATE INDEX ON owned (id)"} {
			denied(t, f.as(role), sql, "^DDL not allowed on tenant databases, use workspace mode$")
		}
	}
	// ...and without it the privileges alone refuse it.
	mustExec(t, f.super(), "DROP EVENT TRIGGER tdb_refuse_nested_ddl")
	for _, role := range []string{"admin", "write", "read"} {
		c := f.as(role)
		denied(t, c, "CREATE TABLE t (id int)", "^permission denied for schema public$")
		denied(t, c, "CREATE SCHEMA s", "^permission denied for database ")
		denied(t, c, "CREATE TEMP TABLE tt (id int)", "^permission denied to create temporary tables")
	}
	denied(t, f.as("admin"), "ALTER TABLE owned ADD COLUMN x int", "^must be owner of table owned$")
	denied(t, f.as("admin"), "DROP TABLE owned", "^must be owner of table owned$")
}

func TestWorkspaceAdminRunsDDL(t *testing.T) {
	t.Parallel()
	for _, kind := range []backend.Kind{backend.KindWorkspace, backend.KindControl} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := provision(t, "ws_", kind)
			admin, write, read := f.as("admin"), f.as("write"), f.as("read")
			mustExec(t, admin, "CREATE TABLE made (id serial PRIMARY KEY, v text)")
			mustExec(t, write, "INSERT INTO made (v) VALUES ('x')")
			mustExec(t, write, "UPDATE made SET v = 'y'")
			if n := queryString(t, read, "SELECT count(*)::text FROM made"); n != "1" {
				t.Errorf("read sees %s rows, want 1", n)
			}
			denied(t, read, "INSERT INTO made (v) VALUES ('x')", "^permission denied for table made$")
			denied(t, write, "CREATE TABLE w (id int)", "^permission denied for schema public$")
			denied(t, read, "CREATE TABLE r (id int)", "^permission denied for schema public$")
			denied(t, write, "DROP TABLE made", "^must be owner of table made$")
			mustExec(t, admin, "DROP TABLE made")

			f.asOwner("CREATE TABLE deployed (id serial PRIMARY KEY)")
			mustExec(t, write, "INSERT INTO deployed DEFAULT VALUES")
		})
	}
}

func TestRoleCannotConnectToAnotherDatabase(t *testing.T) {
	t.Parallel()
	a := provision(t, "xa_", backend.KindTenant)
	b := provision(t, "xb_", backend.KindWorkspace)
	for _, role := range []string{"admin", "write", "read"} {
		_, err := dial(t, a.url, b.spec.Name, backend.RoleName(a.spec.Name, role), a.password(role))
		wantCode(t, err, "42501", `^permission denied for database "`+b.spec.Name+`"$`)
	}
	mustExec(t, a.as("read"), "SELECT 1") // the same credentials work on their own database
}

func TestDrop(t *testing.T) {
	t.Parallel()
	url := testpg.Shared(t).URL()
	spec := backend.DatabaseSpec{Name: "drop_" + randHex(4), Kind: backend.KindWorkspace, Passwords: passwords()}
	if err := backend.Ensure(ctx, url, spec); err != nil {
		t.Fatal(err)
	}
	open, err := dial(t, url, spec.Name, backend.RoleName(spec.Name, "read"), spec.Passwords.Read)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	if err := backend.Drop(ctx, url, spec.Name); err != nil {
		t.Fatalf("Drop with an open session: %v", err)
	}
	if _, err := open.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("session of the dropped database still works")
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	left := queryString(t, conn, `SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) || ' ' ||
		(SELECT count(*) FROM pg_roles WHERE rolname LIKE $2)`, spec.Name, spec.Name+"\\_%")
	if left != "0 0" {
		t.Errorf("after Drop: databases, roles = %s, want 0 0", left)
	}
	if err := backend.Drop(ctx, url, spec.Name); err != nil {
		t.Errorf("second Drop: %v", err)
	}
	if err := backend.Drop(ctx, url, "postgres"); !errors.Is(err, backend.ErrInvalidSpec) {
		t.Errorf("Drop(postgres) = %v, want ErrInvalidSpec", err)
	}
}

func TestHostileNamesAndPasswords(t *testing.T) {
	t.Parallel()
	canary := provision(t, "canary_", backend.KindTenant)
	c := canary.spec.Name
	url := canary.url
	hostile := backend.DatabaseSpec{
		Name: `x"; DROP DATABASE ` + c + `; --'`,
		Kind: backend.KindWorkspace,
		Passwords: backend.Passwords{
			Admin: `p'; ALTER ROLE postgres PASSWORD 'pwned'; --`,
			Write: `q\'; DROP DATABASE ` + c + `; --`,
			Read:  `r$$; DROP ROLE ` + c + `_read; $$`,
		},
	}
	if err := backend.Ensure(ctx, url, hostile); err != nil {
		t.Fatalf("Ensure hostile: %v", err)
	}
	for _, role := range []string{"admin", "write", "read"} {
		pw := map[string]string{"admin": hostile.Passwords.Admin, "write": hostile.Passwords.Write, "read": hostile.Passwords.Read}[role]
		conn, err := dial(t, url, hostile.Name, backend.RoleName(hostile.Name, role), pw)
		if err != nil {
			t.Fatalf("login as hostile %s with its exact password: %v", role, err)
		}
		if db := queryString(t, conn, "SELECT current_database()"); db != hostile.Name {
			t.Errorf("current_database %q", db)
		}
		conn.Close(ctx)
	}
	if err := backend.Drop(ctx, url, hostile.Name); err != nil {
		t.Fatalf("Drop hostile: %v", err)
	}
	// The canary, its roles and the superuser password are untouched.
	mustExec(t, canary.as("read"), "SELECT 1")
	if _, err := backend.Ping(ctx, url); err != nil {
		t.Fatalf("superuser after hostile names: %v", err)
	}

	bad := []backend.DatabaseSpec{
		{Name: "nul_" + randHex(4), Kind: backend.KindTenant, Passwords: backend.Passwords{Admin: "a\x00b", Write: "w", Read: "r"}},
		{Name: "nul\x00" + randHex(4), Kind: backend.KindTenant, Passwords: passwords()},
		{Name: strings.Repeat("n", backend.MaxNameLen+1), Kind: backend.KindTenant, Passwords: passwords()},
		{Name: "kind_" + randHex(4), Kind: "mysql", Passwords: passwords()},
		{Name: "nopw_" + randHex(4), Kind: backend.KindTenant},
		{Name: "template1", Kind: backend.KindTenant, Passwords: passwords()},
	}
	for _, spec := range bad {
		if err := backend.Ensure(ctx, url, spec); !errors.Is(err, backend.ErrInvalidSpec) {
			t.Errorf("Ensure(%q) = %v, want ErrInvalidSpec", spec.Name, err)
		}
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	v, err := backend.Ping(ctx, testpg.Shared(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d+(\.\d+)?`).MatchString(v) {
		t.Errorf("server version %q", v)
	}
	if _, err := backend.Ping(ctx, "postgres://postgres:x@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"); err == nil {
		t.Error("Ping of a closed port succeeded")
	}
}

func TestRunAsOwnerRollsBack(t *testing.T) {
	t.Parallel()
	f := provision(t, "rb_", backend.KindTenant)
	boom := errors.New("boom")
	err := backend.RunAsOwner(ctx, f.url, f.spec.Name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TABLE gone (id int)"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("RunAsOwner = %v, want fn's error", err)
	}
	if n := queryString(t, f.super(), "SELECT count(*)::text FROM pg_tables WHERE tablename = 'gone'"); n != "0" {
		t.Errorf("table of a failed RunAsOwner exists")
	}
}

// TestReadCannotStoreLargeObjects: creating a large object takes no
// privilege by default, so a read role could store data as large objects
// and write them. Only the owner, admin and write roles may create them, in
// every kind of database, and InstallGuard (the reconciler's upgrade of a
// database provisioned before) takes the read role's old ones from it.
func TestReadCannotStoreLargeObjects(t *testing.T) {
	t.Parallel()
	for _, kind := range []backend.Kind{backend.KindTenant, backend.KindWorkspace, backend.KindControl} {
		f := provision(t, "lo_", kind)
		read := f.as("read")
		for _, sql := range []string{"SELECT lo_from_bytea(0, 'x')", "SELECT lo_creat(-1)", "SELECT lo_create(0)"} {
			denied(t, read, sql, `^permission denied for function lo_`)
		}
		if oid := queryString(t, f.as("write"), "SELECT lo_from_bytea(0, 'w')::text"); oid == "" {
			t.Fatalf("%s: the write role made no large object", kind)
		}

		// A database provisioned before: PUBLIC may create them, and the
		// read role made one.
		su := f.super()
		if _, err := su.Exec(ctx, "GRANT EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) TO PUBLIC"); err != nil {
			t.Fatal(err)
		}
		oid := queryString(t, read, "SELECT lo_from_bytea(0, 'by read')::text")
		if err := backend.InstallGuard(ctx, f.url, f.spec.Name, kind, backend.GuardVersion); err != nil {
			t.Fatalf("%s: InstallGuard: %v", kind, err)
		}
		denied(t, read, "SELECT lo_from_bytea(0, 'x')", `^permission denied for function lo_from_bytea$`)
		denied(t, read, "SELECT lo_put("+oid+", 0, 'more')", `^permission denied for large object `+oid+`$`)
		if owner := queryString(t, su, "SELECT lomowner::regrole::text FROM pg_largeobject_metadata WHERE oid = "+oid); owner != backend.RoleName(f.spec.Name, "owner") {
			t.Fatalf("%s: the read role's large object is owned by %s", kind, owner)
		}
	}
}

// TestReadCannotNotifyOrEmitMessages: PUBLIC may run pg_notify, which
// sends the database's listeners a notification, and
// pg_logical_emit_message, which writes a message for its logical decoding
// consumers, so a read role could act on what listens or decodes. Only the
// owner, admin and write roles may, in every kind of database, and
// InstallGuard brings a database provisioned before to that.
func TestReadCannotNotifyOrEmitMessages(t *testing.T) {
	t.Parallel()
	calls := []string{"SELECT pg_notify('jobs', 'by read')", "SELECT pg_logical_emit_message(true, 'tdb', 'by read')::text"}
	for _, kind := range []backend.Kind{backend.KindTenant, backend.KindWorkspace, backend.KindControl} {
		f := provision(t, "se_", kind)
		read, write := f.as("read"), f.as("write")
		for _, sql := range calls {
			denied(t, read, sql, `^permission denied for function pg_(notify|logical_emit_message)$`)
			mustExec(t, write, sql)
		}

		// A database provisioned before: PUBLIC may run them.
		su := f.super()
		mustExec(t, su, "GRANT EXECUTE ON FUNCTION pg_notify(text, text) TO PUBLIC")
		mustExec(t, read, calls[0])
		if err := backend.InstallGuard(ctx, f.url, f.spec.Name, kind, backend.GuardVersion); err != nil {
			t.Fatalf("%s: InstallGuard: %v", kind, err)
		}
		for _, sql := range calls {
			denied(t, read, sql, `^permission denied for function pg_(notify|logical_emit_message)$`)
		}
	}
}

// TestBuiltinsListedAsReadOnlyAreSo checks the classifier's list of built-in
// functions that cannot write (wire/classify/builtins.txt) against the
// server the tests run: each listed name must be a function of pg_catalog
// none of whose forms is volatile. A SELECT that calls only these is not
// guarded by the row limit.
func TestBuiltinsListedAsReadOnlyAreSo(t *testing.T) {
	ctx := context.Background()
	text, err := os.ReadFile("../../wire/classify/builtins.txt")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, testpg.Shared(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace
		GROUP BY proname HAVING bool_and(provolatile <> 'v')`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	readOnly := map[string]bool{}
	for _, n := range names {
		readOnly[n] = true
	}
	listed := 0
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		listed++
		if !readOnly[line] {
			t.Errorf("builtins.txt lists %q, which this server does not have as a function none of whose forms is volatile", line)
		}
	}
	if listed < 2000 {
		t.Fatalf("builtins.txt lists only %d names", listed)
	}
}
