package blueprint_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/blueprint"
	"tdb/internal/testpg"
)

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
