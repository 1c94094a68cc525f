package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testpg"
)

// deployFixture is a provisioned tenant database on the shared server.
type deployFixture struct {
	t   *testing.T
	url string
	db  string
}

func newDeployFixture(t *testing.T) *deployFixture {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	f := &deployFixture{t: t, url: testpg.Shared(t).URL(), db: "deploy_" + hex.EncodeToString(b)}
	ctx := context.Background()
	spec := backend.DatabaseSpec{Name: f.db, Kind: backend.KindTenant,
		Passwords: backend.Passwords{Admin: "a" + f.db, Write: "w" + f.db, Read: "r" + f.db}}
	if err := backend.Ensure(ctx, f.url, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Drop(context.Background(), f.url, f.db) })
	return f
}

// superuser opens a superuser session in the tenant database.
func (f *deployFixture) superuser() *pgx.Conn {
	f.t.Helper()
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg.Database = f.db
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (f *deployFixture) job(from, target int, versions ...[]string) TenantJob {
	job := TenantJob{Tenant: "t", BackendURL: f.url, Database: f.db, From: from, Target: target}
	for i, stmts := range versions {
		if i+1 > from && i+1 <= target {
			job.Versions = append(job.Versions, fsm.BlueprintVersion{Version: i + 1, Statements: stmts})
		}
	}
	return job
}

func (f *deployFixture) exists(sql string) bool {
	f.t.Helper()
	var ok bool
	if err := f.superuser().QueryRow(context.Background(), "SELECT EXISTS ("+sql+")").Scan(&ok); err != nil {
		f.t.Fatal(err)
	}
	return ok
}

var fastApply = ApplyConfig{LockTimeout: 100 * time.Millisecond, Attempts: 2, Backoff: 10 * time.Millisecond}

func TestApplyTenantVersions(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	ctx := context.Background()
	versions := [][]string{
		{"CREATE TABLE accounts (id serial PRIMARY KEY, name text)"},
		{"ALTER TABLE accounts ADD COLUMN email text", "CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email)", "CREATE TABLE notes (id int)"},
		{"ALTER TABLE accounts ADD COLUMN plan text"},
		{"ALTER TABLE accounts ADD COLUMN balance numeric", "CREATE TABLE invoices (id int)"},
	}

	reached, err := applyTenant(ctx, fastApply, f.job(0, 2, versions...))
	if err != nil || reached != 2 {
		t.Fatalf("reached %d, %v", reached, err)
	}
	if !f.exists("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'accounts_email_idx' AND i.indisvalid") {
		t.Fatal("the concurrent index is missing or invalid")
	}
	if !f.exists("SELECT 1 FROM pg_tables WHERE tablename = 'notes' AND tableowner = '" + backend.RoleName(f.db, backend.RoleOwner) + "'") {
		t.Fatal("objects are not owned by the owner role")
	}

	// The FSM lost the result (a crash after the commit): the marker in the
	// database makes the retry a no-op instead of "already exists".
	if reached, err := applyTenant(ctx, fastApply, f.job(0, 2, versions...)); err != nil || reached != 2 {
		t.Fatalf("retry reached %d, %v", reached, err)
	}

	// A busy tenant: a lock held elsewhere makes the version give up after
	// its attempts, with the lock timeout as the reason.
	su := f.superuser()
	tx, err := su.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE accounts IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	reached, err = applyTenant(ctx, fastApply, f.job(2, 3, versions...))
	if err == nil || !strings.Contains(err.Error(), "lock timeout") || !strings.Contains(err.Error(), "gave up after 2 attempts") || reached != 2 {
		t.Fatalf("busy tenant: reached %d, %v", reached, err)
	}
	_ = tx.Rollback(ctx)
	if reached, err := applyTenant(ctx, fastApply, f.job(2, 3, versions...)); err != nil || reached != 3 {
		t.Fatalf("after the lock: reached %d, %v", reached, err)
	}

	// Drift: the version fails with the backend's error and changes nothing.
	if _, err := su.Exec(ctx, "CREATE TABLE invoices (other text)"); err != nil {
		t.Fatal(err)
	}
	reached, err = applyTenant(ctx, fastApply, f.job(3, 4, versions...))
	if err == nil || !strings.Contains(err.Error(), `blueprint version 4: statement 2 (CREATE TABLE invoices (id int)): ERROR: relation "invoices" already exists (SQLSTATE 42P07)`) || reached != 3 {
		t.Fatalf("drift: reached %d, %v", reached, err)
	}
	if f.exists("SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'balance'") {
		t.Fatal("the failed version was partly applied")
	}
}

func TestApplyTenantCannotBecomeSuperuser(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	role := "tdb_evil_" + f.db
	evil := []string{`DO $$ BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'CREATE ROLE ` + role + `'; END $$`}
	_, err := applyTenant(context.Background(), fastApply, f.job(0, 1, evil))
	if err == nil || !strings.Contains(err.Error(), "permission denied to create role") {
		t.Fatalf("DDL replay escaped the owner role: %v", err)
	}
	if f.exists("SELECT 1 FROM pg_roles WHERE rolname = '" + role + "'") {
		t.Fatal("role created")
	}
	if f.exists("SELECT 1 FROM pg_roles WHERE rolname = '" + backend.RoleName(f.db, backend.RoleOwner) + "' AND rolcanlogin") {
		t.Fatal("the owner role was left able to log in")
	}
}

func TestSplitSteps(t *testing.T) {
	tests := []struct {
		name  string
		stmts []string
		want  [][]string
		noTxn []bool
	}{
		{"one transaction", []string{"CREATE TABLE a (id int)", "CREATE TABLE b (id int)"},
			[][]string{{"CREATE TABLE a (id int)", "CREATE TABLE b (id int)"}}, []bool{false}},
		{"concurrent index alone", []string{"CREATE TABLE a (id int)", "CREATE INDEX CONCURRENTLY i ON a (id)", "CREATE TABLE b (id int)"},
			[][]string{{"CREATE TABLE a (id int)"}, {"CREATE INDEX CONCURRENTLY i ON a (id)"}, {"CREATE TABLE b (id int)"}}, []bool{false, true, false}},
		{"two concurrent", []string{"CREATE INDEX CONCURRENTLY i ON a (id)", "DROP INDEX CONCURRENTLY j"},
			[][]string{{"CREATE INDEX CONCURRENTLY i ON a (id)"}, {"DROP INDEX CONCURRENTLY j"}}, []bool{true, true}},
		{"ADD VALUE in the transaction", []string{"ALTER TYPE mood ADD VALUE 'x'", "ALTER TABLE a ADD COLUMN m mood"},
			[][]string{{"ALTER TYPE mood ADD VALUE 'x'", "ALTER TABLE a ADD COLUMN m mood"}}, []bool{false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps := splitSteps(tc.stmts)
			if len(steps) != len(tc.want) {
				t.Fatalf("steps = %+v", steps)
			}
			for i, s := range steps {
				if !slices.Equal(s.stmts, tc.want[i]) || s.noTxn != tc.noTxn[i] {
					t.Fatalf("step %d = %+v, want %v noTxn=%v", i, s, tc.want[i], tc.noTxn[i])
				}
			}
		})
	}
}

// TestApplyTenantAfterACutConcurrentIndex: a try of a version that made its
// CREATE INDEX CONCURRENTLY and stopped before recording the version (the
// node died) leaves the index behind, valid or, when cut off, invalid. The
// next try takes a valid one as done and makes an invalid one again.
func TestApplyTenantAfterACutConcurrentIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	versions := [][]string{
		{"CREATE TABLE accounts (id serial PRIMARY KEY, name text)"},
		{"CREATE INDEX CONCURRENTLY accounts_name ON accounts (name)", "ALTER TABLE accounts ADD COLUMN plan text"},
	}
	for _, left := range []string{"valid", "invalid"} {
		t.Run(left, func(t *testing.T) {
			f := newDeployFixture(t)
			if reached, err := applyTenant(ctx, fastApply, f.job(0, 1, versions...)); err != nil || reached != 1 {
				t.Fatalf("version 1: reached %d, %v", reached, err)
			}
			su := f.superuser()
			if left == "valid" {
				if _, err := su.Exec(ctx, "CREATE INDEX CONCURRENTLY accounts_name ON accounts (name)"); err != nil {
					t.Fatal(err)
				}
			} else {
				// A unique index over duplicates fails and stays, invalid.
				if _, err := su.Exec(ctx, "INSERT INTO accounts (name) VALUES ('x'), ('x')"); err != nil {
					t.Fatal(err)
				}
				if _, err := su.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY accounts_name ON accounts (name)"); err == nil {
					t.Fatal("the unique index over duplicates was made")
				}
				if !f.exists("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'accounts_name' AND NOT i.indisvalid") {
					t.Fatal("no invalid index left to start from")
				}
			}
			if reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...)); err != nil || reached != 2 {
				t.Fatalf("version 2 after an earlier try: reached %d, %v", reached, err)
			}
			if !f.exists("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'accounts_name' AND i.indisvalid AND NOT i.indisunique") {
				t.Fatal("the index is not the version's, valid")
			}
			if !f.exists("SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'plan'") {
				t.Fatal("the rest of the version did not run")
			}
		})
	}
}

// TestApplyTenantAfterACutConcurrentDrop: a try of a version that ran its
// DROP INDEX CONCURRENTLY and stopped before recording how far it got
// leaves the index gone; the next try takes that as done.
func TestApplyTenantAfterACutConcurrentDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	versions := [][]string{
		{"CREATE TABLE accounts (id serial PRIMARY KEY, name text)", "CREATE INDEX accounts_name ON accounts (name)"},
		{"DROP INDEX CONCURRENTLY accounts_name", "ALTER TABLE accounts ADD COLUMN plan text"},
	}
	f := newDeployFixture(t)
	if reached, err := applyTenant(ctx, fastApply, f.job(0, 1, versions...)); err != nil || reached != 1 {
		t.Fatalf("version 1: reached %d, %v", reached, err)
	}
	if _, err := f.superuser().Exec(ctx, "DROP INDEX CONCURRENTLY accounts_name"); err != nil {
		t.Fatal(err)
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...)); err != nil || reached != 2 {
		t.Fatalf("version 2 after an earlier try: reached %d, %v", reached, err)
	}
	if !f.exists("SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'plan'") {
		t.Fatal("the rest of the version did not run")
	}
}

// A schema loaded from pg_dump's output defines a function before the table
// its body reads (pg_dump turns check_function_bodies off for that): its
// versions deploy in the order they were recorded.
func TestApplyTenantFunctionBeforeItsTable(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	versions := [][]string{
		{"CREATE FUNCTION public.cnt() RETURNS integer LANGUAGE sql AS $$ SELECT count(*)::int FROM public.later_tbl $$"},
		{"CREATE TABLE public.later_tbl (id integer)"},
	}
	if reached, err := applyTenant(context.Background(), fastApply, f.job(0, 2, versions...)); err != nil || reached != 2 {
		t.Fatalf("reached %d: %v", reached, err)
	}
	var n int
	if err := f.superuser().QueryRow(context.Background(), "SELECT public.cnt()").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the function: %d, %v", n, err)
	}
}

// holdLock takes a lock on table in a superuser transaction, so that a
// version's statement on it gives up after its attempts; release ends it.
func (f *deployFixture) holdLock(table string) (release func()) {
	f.t.Helper()
	ctx := context.Background()
	tx, err := f.superuser().Begin(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS SHARE MODE"); err != nil {
		f.t.Fatal(err)
	}
	return func() { _ = tx.Rollback(ctx) }
}

// marker is the tenant database's marker comment.
func (f *deployFixture) marker() string {
	f.t.Helper()
	var c string
	if err := f.superuser().QueryRow(context.Background(), "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()").Scan(&c); err != nil {
		f.t.Fatal(err)
	}
	return c
}

// A version with ALTER TYPE … ADD VALUE runs in one transaction (as it ran
// in the workspace, PostgreSQL 12 and later): when a later statement of it
// gives up on a busy tenant, the new value is gone too, and the rerun
// applies the whole version.
func TestApplyTenantVersionWithAddValueIsAtomic(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	ctx := context.Background()
	versions := [][]string{
		{"CREATE TYPE mood AS ENUM ('ok')", "CREATE TABLE accounts (id int)"},
		{"ALTER TYPE mood ADD VALUE 'happy'", "ALTER TABLE accounts ADD COLUMN m mood"},
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(0, 1, versions...)); err != nil || reached != 1 {
		t.Fatalf("version 1: reached %d, %v", reached, err)
	}
	release := f.holdLock("accounts")
	reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...))
	release()
	if err == nil || reached != 1 {
		t.Fatalf("busy tenant: reached %d, %v", reached, err)
	}
	if f.exists("SELECT 1 FROM pg_enum WHERE enumlabel = 'happy'") {
		t.Fatal("the failed version's ADD VALUE stayed committed")
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...)); err != nil || reached != 2 {
		t.Fatalf("rerun after the lock is gone: reached %d, %v", reached, err)
	}
}

// A version that commits in steps records how far it got: the rerun goes
// on after the statements done (a DROP INDEX CONCURRENTLY run again would
// fail), and the marker then names the version alone.
func TestApplyTenantResumesAfterTheStepsDone(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	ctx := context.Background()
	versions := [][]string{
		{"CREATE TABLE accounts (id int, name text)", "CREATE INDEX old_idx ON accounts (id)"},
		{"CREATE INDEX CONCURRENTLY name_idx ON accounts (name)", "DROP INDEX CONCURRENTLY old_idx", "ALTER TABLE accounts ADD COLUMN plan text"},
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(0, 1, versions...)); err != nil || reached != 1 {
		t.Fatalf("version 1: reached %d, %v", reached, err)
	}
	// Drift stops the version at its third statement.
	su := f.superuser()
	if _, err := su.Exec(ctx, "ALTER TABLE accounts ADD COLUMN plan int"); err != nil {
		t.Fatal(err)
	}
	reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...))
	if err == nil || !strings.Contains(err.Error(), `column "plan" of relation "accounts" already exists`) || reached != 1 {
		t.Fatalf("drift: reached %d, %v", reached, err)
	}
	if m := f.marker(); m != "tdb:schema_version=1;done=2" {
		t.Fatalf("marker after two of three statements: %q", m)
	}
	// Fixed, the rerun goes on with the third.
	if _, err := su.Exec(ctx, "ALTER TABLE accounts DROP COLUMN plan"); err != nil {
		t.Fatal(err)
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...)); err != nil || reached != 2 {
		t.Fatalf("rerun: reached %d, %v", reached, err)
	}
	if m := f.marker(); m != "tdb:schema_version=2" {
		t.Fatalf("marker after the version: %q", m)
	}
	if !f.exists("SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'plan' AND data_type = 'text'") {
		t.Fatal("the version's column is missing")
	}
}

// A cut CREATE INDEX CONCURRENTLY leaves an invalid index; a version whose
// statement says IF NOT EXISTS then succeeds, skipping, over it. The index
// is made again, valid: a UNIQUE one that enforces nothing would let
// duplicates in.
func TestApplyTenantRebuildsAnInvalidIndexIfNotExists(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	ctx := context.Background()
	versions := [][]string{
		{"CREATE TABLE accounts (id serial PRIMARY KEY, name text)"},
		{"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_name ON accounts (name)"},
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(0, 1, versions...)); err != nil || reached != 1 {
		t.Fatalf("version 1: reached %d, %v", reached, err)
	}
	su := f.superuser()
	if _, err := su.Exec(ctx, "INSERT INTO accounts (name) VALUES ('x'), ('x')"); err != nil {
		t.Fatal(err)
	}
	if _, err := su.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY accounts_name ON accounts (name)"); err == nil {
		t.Fatal("the unique index over duplicates was made")
	}
	if _, err := su.Exec(ctx, "DELETE FROM accounts WHERE id = (SELECT max(id) FROM accounts)"); err != nil {
		t.Fatal(err)
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(1, 2, versions...)); err != nil || reached != 2 {
		t.Fatalf("version 2: reached %d, %v", reached, err)
	}
	if !f.exists("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'accounts_name' AND i.indisvalid") {
		t.Fatal("version 2 was recorded with accounts_name invalid")
	}
	if _, err := su.Exec(ctx, "INSERT INTO accounts (name) VALUES ('x')"); err == nil {
		t.Fatal("a duplicate went in")
	}
}

func TestParseMarker(t *testing.T) {
	for comment, want := range map[string]marker{
		"": {}, "tdb:schema_version=3": {version: 3}, "tdb:schema_version=3;done=2": {version: 3, done: 2},
		"tdb:schema_version=0;done=1": {done: 1}, "tdb:schema_version=x": {}, "tdb:schema_version=-1": {},
		"tdb:schema_version=4;done=-2": {version: 4}, "tdb:schema_version=4;done=y": {version: 4}, "a comment": {},
		"tdb:schema_version=4;done=0;import=imp_1/42": {version: 4, imp: "imp_1", rows: 42},
		"tdb:schema_version=4;done=2;import=imp_1/0":  {version: 4, done: 2, imp: "imp_1"},
		"tdb:schema_version=4;done=0;import=imp_1":    {version: 4},
		"tdb:schema_version=4;done=0;import=imp_1/-3": {version: 4},
		"tdb:schema_version=4;done=0;import=/3":       {version: 4},
		"tdb:schema_version=x;done=0;import=imp_1/3":  {},
		"tdb:schema_version=5;import=imp_1/3":         {version: 5, imp: "imp_1", rows: 3},
	} {
		if m := parseMarker(comment); m != want {
			t.Errorf("parseMarker(%q) = %+v; want %+v", comment, m, want)
		}
		if want.version > 0 || want.done > 0 || want.imp != "" {
			if m := parseMarker(want.String()); m != want {
				t.Errorf("parseMarker(%q) = %+v; want %+v", want.String(), m, want)
			}
		}
	}
	// What a build that reads only the version and done fields makes of a
	// marker with an import: the version, and no statements done.
	if got := (marker{version: 7, imp: "imp_1", rows: 3}).String(); !strings.HasPrefix(got, "tdb:schema_version=7;done=0;") {
		t.Errorf("a marker with an import: %q", got)
	}
}
