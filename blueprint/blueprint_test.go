package blueprint_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/blueprint"
	"tdb/internal/freeport"
	"tdb/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

var ctx = context.Background()

func randName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// dbURL is the shared server's superuser URL for another database.
func dbURL(t *testing.T, db string) string {
	u, err := url.Parse(testpg.Shared(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

func exec1(t *testing.T, connURL string, sqls ...string) {
	t.Helper()
	c, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, s := range sqls {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// workspace provisions a workspace database and returns its name and admin
// role password.
func workspace(t *testing.T) (db, password string) {
	t.Helper()
	db = randName("ws_")
	spec := backend.DatabaseSpec{Name: db, Kind: backend.KindWorkspace,
		Passwords: backend.Passwords{Admin: "a" + db, Write: "w" + db, Read: "r" + db}}
	url := testpg.Shared(t).URL()
	if err := backend.Ensure(ctx, url, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	return db, spec.Passwords.Admin
}

// summary describes a database's schema public in comparable lines.
func summary(t *testing.T, connURL string) []string {
	t.Helper()
	c, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `
		SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' ||
		       coalesce(column_default, '') || ' ' || is_identity || ' ' || coalesce(generation_expression, '')
		  FROM information_schema.columns WHERE table_schema = 'public'
		UNION ALL
		SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
		  FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype <> 'n'
		UNION ALL
		SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
		UNION ALL
		SELECT 'view ' || viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public'
		UNION ALL
		SELECT 'type ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
		  FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname
		UNION ALL
		SELECT 'comment ' || c.relname || ' ' || d.objsubid || ' ' || d.description
		  FROM pg_description d JOIN pg_class c ON c.oid = d.objoid WHERE c.relnamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

const sourceSchema = `
CREATE TYPE mood AS ENUM ('happy', 'it''s complicated');
CREATE TABLE accounts (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    balance DECIMAL(15,2) DEFAULT 0 CHECK (balance >= 0),
    mood mood,
    created_at TIMESTAMP DEFAULT NOW()
);
CREATE TABLE invoices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id INT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    cents BIGINT NOT NULL,
    euros NUMERIC GENERATED ALWAYS AS (cents / 100.0) STORED
);
CREATE INDEX invoices_account_idx ON invoices (account_id);
CREATE UNIQUE INDEX accounts_lower_email ON accounts (lower(email));
CREATE VIEW rich AS SELECT id, name FROM accounts WHERE balance > 1000;
COMMENT ON TABLE accounts IS 'customers';
COMMENT ON COLUMN accounts.email IS 'login';
INSERT INTO accounts (name, email) VALUES ('Alice', 'alice@test.com');`

func TestImportSchemaBothWays(t *testing.T) {
	needPgDump(t)
	srcURL := sourceDB(t, sourceSchema)
	want := summary(t, srcURL)
	t.Logf("%d schema lines", len(want))

	dumped, method, err := blueprint.ImportSchema(ctx, srcURL)
	if err != nil || method != blueprint.MethodPgDump {
		t.Fatalf("ImportSchema: %s %v", method, err)
	}
	introspected, err := blueprint.Introspect(ctx, srcURL)
	if err != nil {
		t.Fatal(err)
	}
	for name, stmts := range map[string][]string{"pg_dump": dumped, "introspection": introspected} {
		t.Run(name, func(t *testing.T) {
			for _, s := range stmts {
				if strings.HasPrefix(s, "SET ") || strings.Contains(s, "INSERT") || strings.HasPrefix(s, `\`) {
					t.Fatalf("not DDL: %q", s)
				}
			}
			db := applied(t, stmts)
			if got := summary(t, dbURL(t, db)); !slices.Equal(got, want) {
				t.Fatalf("schema differs:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestImportSchemaRefusals(t *testing.T) {
	for _, u := range []string{"mysql://x@h/db", "not a url", "postgres:///nohost"} {
		if _, _, err := blueprint.ImportSchema(ctx, u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	empty := randName("empty_")
	admin := testpg.Shared(t).URL()
	exec1(t, admin, "CREATE DATABASE "+empty)
	t.Cleanup(func() { exec1(t, admin, "DROP DATABASE "+empty+" WITH (FORCE)") })
	if _, _, err := blueprint.ImportSchema(ctx, dbURL(t, empty)); err == nil || !strings.Contains(err.Error(), "no tables") {
		t.Fatalf("empty source: %v", err)
	}
	if _, err := blueprint.Introspect(ctx, dbURL(t, empty)); err == nil || !strings.Contains(err.Error(), "no tables") {
		t.Fatalf("empty source (introspection): %v", err)
	}
	u, _ := url.Parse(dbURL(t, empty))
	u.User = url.UserPassword("postgres", "wrong-secret")
	if _, _, err := blueprint.ImportSchema(ctx, u.String()); err == nil || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestTemplatesApply(t *testing.T) {
	for _, name := range blueprint.TemplateNames() {
		t.Run(name, func(t *testing.T) {
			db, pw := workspace(t)
			tpl := blueprint.Templates[name]
			if err := blueprint.Apply(ctx, testpg.Shared(t).URL(), db, backend.RoleName(db, backend.RoleAdmin), pw, tpl.Statements); err != nil {
				t.Fatal(err)
			}
			// Applying it twice conflicts.
			if err := blueprint.Apply(ctx, testpg.Shared(t).URL(), db, backend.RoleName(db, backend.RoleAdmin), pw, tpl.Statements); err == nil {
				t.Fatal("template applied twice")
			}
		})
	}
}

func TestCheckSourceURL(t *testing.T) {
	for _, u := range []string{
		"postgres://u:p@db.example:5432/app?sslmode=require",
		"postgresql://u@10.0.0.1/app?connect_timeout=5&application_name=x",
	} {
		if _, err := blueprint.CheckSourceURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{
		"postgres://u@h/db?sslkey=/etc/ssl/private/key.pem",
		"postgres://u@h/db?passfile=/root/.pgpass",
		"postgres://u@h/db?host=/var/run/postgresql",
		"postgres://u@h/db?service=prod",
		"postgres:///db",
		"mysql://u@h/db",
	} {
		if _, err := blueprint.CheckSourceURL(u); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

// TestImportSchemaErrorWithoutPassword: pg_dump's refusal of a source URL
// without a password reads as pg_dump wrote it (an empty password is not
// "redacted" between every character).
func TestImportSchemaErrorWithoutPassword(t *testing.T) {
	needPgDump(t)
	addr, err := freeport.Addr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = blueprint.ImportSchema(ctx, "postgres://nobody@"+addr+"/app?connect_timeout=5")
	if err == nil {
		t.Fatal("a source where nothing listens was read")
	}
	if msg := err.Error(); strings.Contains(msg, "xxxxx") || !strings.Contains(msg, "pg_dump: ") || !strings.Contains(msg, "connection") {
		t.Fatalf("error %q", msg)
	}
}

// TestSourceUsesOnlyItsOwnCredentials: a from_url without a password is
// tried without one: the node's own ~/.pgpass (or PGPASSFILE, PGPASSWORD)
// never logs a client in to a database it named.
func TestSourceUsesOnlyItsOwnCredentials(t *testing.T) {
	srv := testpg.Shared(t)
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	src := randName("src_")
	exec1(t, srv.URL(), "CREATE DATABASE "+src)
	t.Cleanup(func() { exec1(t, srv.URL(), "DROP DATABASE "+src+" WITH (FORCE)") })
	exec1(t, dbURL(t, src), "CREATE TABLE t (tenant_id text)", "INSERT INTO t VALUES ('a')")

	home := t.TempDir()
	passfile := home + "/.pgpass"
	if err := os.WriteFile(passfile, []byte("*:*:*:*:"+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("PGPASSFILE", passfile)
	t.Setenv("PGPASSWORD", pw)
	u.User = url.User(u.User.Username())
	u.Path = "/" + src
	noPassword := u.String()

	if _, err := blueprint.Introspect(ctx, noPassword); err == nil {
		t.Error("Introspect logged in with the node's own password")
	}
	if _, err := blueprint.Analyse(ctx, noPassword, "tenant_id"); err == nil {
		t.Error("Analyse logged in with the node's own password")
	}
	needPgDump(t)
	if _, method, err := blueprint.ImportSchema(ctx, noPassword); err == nil {
		t.Errorf("ImportSchema (%s) logged in with the node's own password", method)
	}
}

// TestIntrospectForeignKeyToUniqueIndex: a foreign key may reference the
// columns of a unique index that backs no constraint; introspection must
// make the index before the key, as pg_dump does.
func TestIntrospectForeignKeyToUniqueIndex(t *testing.T) {
	srcURL := sourceDB(t, `
CREATE TABLE plans (id int NOT NULL, code text NOT NULL);
CREATE UNIQUE INDEX plans_code ON plans (code);
CREATE TABLE accounts (id int PRIMARY KEY, plan_code text REFERENCES plans (code));`)
	want := summary(t, srcURL)
	stmts, err := blueprint.Introspect(ctx, srcURL)
	if err != nil {
		t.Fatal(err)
	}
	db := applied(t, stmts)
	if got := summary(t, dbURL(t, db)); !slices.Equal(got, want) {
		t.Fatalf("schema differs:\n got %q\nwant %q", got, want)
	}
}

// TestImportSchemaFunctionBeforeItsTable: pg_dump writes a function before
// the tables its body reads (and turns the body check off for that); the
// schema so read applies to a workspace.
func TestImportSchemaFunctionBeforeItsTable(t *testing.T) {
	srcURL := sourceDB(t, `CREATE TABLE t (id int);
CREATE FUNCTION n() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.t';`)
	stmts, _, err := blueprint.ImportSchema(ctx, srcURL)
	if err != nil {
		t.Fatal(err)
	}
	db := applied(t, stmts)
	var n int64
	c := dbURL(t, db)
	conn, err := pgx.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT public.n()").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the function: %d, %v", n, err)
	}
}

// sourceDB is a new database of the test server holding ddl, dropped at
// the test's end; it returns its URL.
func sourceDB(t *testing.T, ddl string) string {
	t.Helper()
	src := randName("src_")
	admin := testpg.Shared(t).URL()
	exec1(t, admin, "CREATE DATABASE "+src)
	t.Cleanup(func() { exec1(t, admin, "DROP DATABASE "+src+" WITH (FORCE)") })
	srcURL := dbURL(t, src)
	exec1(t, srcURL, ddl)
	return srcURL
}

// applied is a new workspace database with stmts applied as its admin role.
func applied(t *testing.T, stmts []string) string {
	t.Helper()
	db, pw := workspace(t)
	if err := blueprint.Apply(ctx, testpg.Shared(t).URL(), db, backend.RoleName(db, backend.RoleAdmin), pw, stmts); err != nil {
		t.Fatalf("apply: %v\n%s", err, strings.Join(stmts, ";\n"))
	}
	return db
}

// needPgDump skips the test when pg_dump is not on PATH, but only under
// -short: CI installs it, and a run without it must fail, not pass unseen.
func needPgDump(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("pg_dump"); err != nil {
		if testing.Short() && os.Getenv("TDB_REQUIRE_ALL") == "" {
			t.Skip("pg_dump not on PATH (skipped only under -short, and never with TDB_REQUIRE_ALL=1)")
		}
		t.Fatalf("pg_dump not on PATH: %v", err)
	}
}

// TestRedactPassword: a password is kept out of the places a connection
// string or URL quotes it, and the rest of the message keeps its words,
// also where they happen to be the password.
func TestRedactPassword(t *testing.T) {
	for _, tc := range []struct{ msg, password, want string }{
		{`failed to connect to user=postgres database=postgres: server error: FATAL: database "postgres" does not exist`, "postgres",
			`failed to connect to user=postgres database=postgres: server error: FATAL: database "postgres" does not exist`},
		{"cannot parse postgres://postgres:postgres@db1/x", "postgres", "cannot parse postgres://postgres:xxxxx@db1/x"},
		{"cannot parse host=db1 password=s3cret user=u", "s3cret", "cannot parse host=db1 password=xxxxx user=u"},
		{"cannot parse host=db1 password='s3cret' user=u", "s3cret", "cannot parse host=db1 password=xxxxx user=u"},
		{"cannot parse postgres://u:p%40ss@db1/x", "p@ss", "cannot parse postgres://u:xxxxx@db1/x"},
		{"dial unix /nonexist: no such file", "x", "dial unix /nonexist: no such file"},
		// The password written with other escapes than url's own, or quoted
		// with a backslash, or in a URL's query, is redacted all the same.
		{"cannot parse postgres://u:p%2fss@db1/x", "p/ss", "cannot parse postgres://u:xxxxx@db1/x"},
		{"cannot parse postgres://u:%73ecret@db1/x", "secret", "cannot parse postgres://u:xxxxx@db1/x"},
		{`cannot parse host=db1 password='it\'s' user=u`, "it's", "cannot parse host=db1 password=xxxxx user=u"},
		{"cannot parse postgres://u@db1/x?password=p%40ss&sslmode=disable", "p@ss", "cannot parse postgres://u@db1/x?password=xxxxx&sslmode=disable"},
		{"cannot parse postgres://u@db1/x?PASSWORD=a+b", "a b", "cannot parse postgres://u@db1/x?PASSWORD=xxxxx"},
		{"cannot parse postgres://u:other@db1:5432/x", "", "cannot parse postgres://u:xxxxx@db1:5432/x"},
		{"cannot parse postgres://db1:5432/x and mail a@b", "x", "cannot parse postgres://db1:5432/x and mail a@b"},
		{"no password here", "", "no password here"},
	} {
		if got := blueprint.RedactPassword(tc.msg, tc.password); got != tc.want {
			t.Errorf("RedactPassword(%q, %q) = %q, want %q", tc.msg, tc.password, got, tc.want)
		}
	}
}
