package node_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
)

type deploymentOut struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	TargetVersion    int    `json:"target_version"`
	TenantsTotal     int    `json:"tenants_total"`
	TenantsCompleted int    `json:"tenants_completed"`
	TenantsFailed    int    `json:"tenants_failed"`
	Results          []struct {
		TenantID    string `json:"tenant_id"`
		Status      string `json:"status"`
		Error       string `json:"error"`
		DurationMs  int64  `json:"duration_ms"`
		FromVersion int    `json:"from_version"`
		Version     int    `json:"version"`
		Attempts    int    `json:"attempts"`
	} `json:"results"`
}

// workspaceDDL runs DDL in the myapp workspace; each call is one blueprint
// version (a multi-statement string commits as one).
func workspaceDDL(t *testing.T, e *testnode.Env, sql string) {
	t.Helper()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	if _, err := ws.Exec(context.Background(), sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("workspace DDL %q: %v", sql, err)
	}
}

// createTenants creates tenants t00…t<n-1> of myapp, a few at a time.
func createTenants(t *testing.T, e *testnode.Env, n int) []string {
	t.Helper()
	names := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range names {
		names[i] = fmt.Sprintf("t%02d", i)
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var raw map[string]any
			if status := e.Do(t, "POST", "/v1/tenants", e.ProxyPassword, "", map[string]string{"name": name, "blueprint": "myapp"}, &raw); status != 201 {
				t.Errorf("create tenant %s: %d %v", name, status, raw)
			}
		}(names[i])
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return names
}

// physical is the physical database of a myapp tenant.
func physical(t testing.TB, e *testnode.Env, tenant string) string {
	t.Helper()
	return e.Physical(t, fsm.TenantDatabase("myapp", tenant))
}

// asOwner runs SQL in a tenant's physical database as its owner, bypassing
// the proxy: how the tests make a tenant drift.
func asOwner(t *testing.T, e *testnode.Env, tenant, sql string) {
	t.Helper()
	err := backend.RunAsOwner(context.Background(), e.PG.URL(), physical(t, e, tenant), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), sql)
		return err
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", sql, tenant, err)
	}
}

// superuser opens a superuser session in a tenant's physical database.
func superuser(t *testing.T, e *testnode.Env, tenant string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = physical(t, e, tenant)
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func hasColumn(t *testing.T, e *testnode.Env, tenant, table, column string) bool {
	t.Helper()
	var ok bool
	err := superuser(t, e, tenant).QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2)", table, column).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func deploy(t *testing.T, e *testnode.Env, body map[string]any) deploymentOut {
	t.Helper()
	var d deploymentOut
	e.MustDo(t, "POST", "/v1/deployments", e.ProxyPassword, "", body, &d)
	return d
}

// waitDeployment waits until a deployment is no longer in progress.
func waitDeployment(t *testing.T, e *testnode.Env, id string) deploymentOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := e.Node.FSM().WaitFor(ctx, func(s *fsm.State) bool {
		d := s.Deployments[id]
		return d != nil && d.Status != fsm.DeploymentInProgress
	})
	if err != nil {
		t.Fatalf("deployment %s did not finish: %v", id, err)
	}
	var d deploymentOut
	e.MustDo(t, "GET", "/v1/deployments/"+id, e.ProxyPassword, "", nil, &d)
	return d
}

func schemaVersion(t *testing.T, e *testnode.Env, tenant string) int {
	t.Helper()
	var out struct {
		SchemaVersion int `json:"schema_version"`
	}
	e.MustDo(t, "GET", "/v1/tenants/"+tenant, e.ProxyPassword, "", nil, &out)
	return out.SchemaVersion
}

// TestDeploymentWithDriftedTenant deploys two versions (one with CREATE INDEX
// CONCURRENTLY) to many tenants, one of which drifted: it alone fails, with
// the backend's error, and is left unchanged; a rerun after the fix does only
// that tenant.
func TestDeploymentWithDriftedTenant(t *testing.T) {
	const n = 50
	e := testnode.Start(t)
	ctx := context.Background()
	workspaceDDL(t, e, seedAccounts)
	start := time.Now()
	tenants := createTenants(t, e, n)
	t.Logf("created %d tenants in %s", n, time.Since(start).Round(time.Millisecond))

	workspaceDDL(t, e, `ALTER TABLE accounts ADD COLUMN plan text;
		CREATE TABLE invoices (id serial PRIMARY KEY, account_id int REFERENCES accounts (id), amount numeric)`)
	workspaceDDL(t, e, "CREATE INDEX CONCURRENTLY invoices_account_idx ON invoices (account_id)")
	const broken = "t07"
	asOwner(t, e, broken, "CREATE TABLE invoices (legacy text)")

	start = time.Now()
	d := deploy(t, e, map[string]any{"blueprint": "myapp", "all": true})
	if d.Status != fsm.DeploymentInProgress || d.TargetVersion != 3 || d.TenantsTotal != n {
		t.Fatalf("created %+v", d)
	}
	d = waitDeployment(t, e, d.ID)
	t.Logf("deployed 2 versions to %d tenants in %s", n, time.Since(start).Round(time.Millisecond))
	if d.Status != fsm.DeploymentFailed || d.TenantsCompleted != n-1 || d.TenantsFailed != 1 {
		t.Fatalf("deployment %s: %d completed, %d failed", d.Status, d.TenantsCompleted, d.TenantsFailed)
	}
	for _, r := range d.Results {
		if r.TenantID == broken {
			if r.Status != fsm.TenantFailed || r.Version != 1 ||
				!strings.Contains(r.Error, `blueprint version 2: statement 2 (CREATE TABLE invoices (id serial PRIMARY KEY, account_id int REFERENCES accounts…): ERROR: relation "invoices" already exists (SQLSTATE 42P07)`) {
				t.Fatalf("broken tenant result %+v", r)
			}
			continue
		}
		if r.Status != fsm.TenantDone || r.FromVersion != 1 || r.Version != 3 || r.Attempts != 1 {
			t.Fatalf("tenant result %+v", r)
		}
	}
	// The broken tenant is unchanged: version 2 rolled back as a whole.
	if hasColumn(t, e, broken, "accounts", "plan") || !hasColumn(t, e, broken, "invoices", "legacy") {
		t.Fatal("the failed tenant was changed")
	}
	if v := schemaVersion(t, e, broken); v != 1 {
		t.Fatalf("broken tenant schema_version = %d, want 1", v)
	}
	// A done tenant has every version, usable through the proxy by its keys.
	if v := schemaVersion(t, e, tenants[0]); v != 3 {
		t.Fatalf("schema_version = %d, want 3", v)
	}
	var valid bool
	if err := superuser(t, e, tenants[0]).QueryRow(ctx,
		"SELECT indisvalid FROM pg_index WHERE indexrelid = 'invoices_account_idx'::regclass").Scan(&valid); err != nil || !valid {
		t.Fatalf("concurrent index: valid=%v, %v", valid, err)
	}
	write := e.CreateKey(t, "write", "workspace", "myapp")
	c := connect(t, e.ConnString(write, "myapp__"+tenants[0], "require"))
	if _, err := c.Exec(ctx, "WITH a AS (INSERT INTO accounts (name, email, plan) VALUES ('A', 'a@x', 'pro') RETURNING id) INSERT INTO invoices (account_id, amount) SELECT id, 10 FROM a"); err != nil {
		t.Fatalf("use the deployed schema: %v", err)
	}

	// Fix the drift and rerun: only the broken tenant has work left.
	asOwner(t, e, broken, "DROP TABLE invoices")
	d = deploy(t, e, map[string]any{"blueprint": "myapp", "all": true})
	if d.TenantsCompleted != n-1 {
		t.Fatalf("rerun starts with %d tenants done, want %d", d.TenantsCompleted, n-1)
	}
	d = waitDeployment(t, e, d.ID)
	if d.Status != fsm.DeploymentCompleted || d.TenantsCompleted != n {
		t.Fatalf("rerun %s: %d completed", d.Status, d.TenantsCompleted)
	}
	for _, r := range d.Results {
		worked := r.TenantID == broken
		if worked != (r.Attempts == 1) || (worked && r.FromVersion != 1) || r.Version != 3 {
			t.Fatalf("rerun result %+v", r)
		}
	}
	if !hasColumn(t, e, broken, "accounts", "plan") || schemaVersion(t, e, broken) != 3 {
		t.Fatal("the fixed tenant did not get the versions")
	}
}

// TestDeploymentResumesAfterRestart stops the node while a deployment is
// running on a tenant (held up by a lock) and checks that the restarted node
// retries that tenant and finishes the rest.
func TestDeploymentResumesAfterRestart(t *testing.T) {
	e := testnode.Start(t)
	ctx := context.Background()
	workspaceDDL(t, e, seedAccounts)
	tenants := createTenants(t, e, 6)
	workspaceDDL(t, e, "ALTER TABLE accounts ADD COLUMN plan text")

	// The first tenant is busy: the deployment waits on its lock.
	busy := superuser(t, e, tenants[0])
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE accounts IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	d := deploy(t, e, map[string]any{"blueprint": "myapp", "all": true, "concurrency": 1})
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = e.Node.FSM().WaitFor(wctx, func(s *fsm.State) bool {
		r := s.Deployments[d.ID].Result(tenants[0])
		return r.Status == fsm.TenantRunning
	})
	if err != nil {
		t.Fatal(err)
	}

	e.Restart(t)
	_ = tx.Rollback(ctx)
	d = waitDeployment(t, e, d.ID)
	if d.Status != fsm.DeploymentCompleted || d.TenantsCompleted != len(tenants) {
		t.Fatalf("after restart: %+v", d)
	}
	if r := d.Results[0]; r.TenantID != tenants[0] || r.Attempts != 2 {
		t.Fatalf("interrupted tenant %+v, want 2 attempts", r)
	}
	for _, name := range tenants {
		if !hasColumn(t, e, name, "accounts", "plan") || schemaVersion(t, e, name) != 2 {
			t.Fatalf("tenant %s not at version 2", name)
		}
	}
}

// TestDeploymentLeavesOutTenantsBeingDeleted: a tenant whose deletion was
// accepted (202) but whose database is not dropped yet is not part of a
// deployment created then, which completes on the others.
func TestDeploymentLeavesOutTenantsBeingDeleted(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	workspaceDDL(t, e, seedAccounts)
	e.CreateTenant(t, "kept")
	e.CreateTenant(t, "gone")
	workspaceDDL(t, e, "ALTER TABLE accounts ADD COLUMN plan text")
	if status := e.Do(t, "DELETE", "/v1/tenants/gone", e.ProxyPassword, "", nil, nil); status != 202 {
		t.Fatalf("delete: HTTP %d", status)
	}
	d := waitDeployment(t, e, deploy(t, e, map[string]any{"blueprint": "myapp", "all": true}).ID)
	if d.Status != fsm.DeploymentCompleted || d.TenantsTotal != 1 || len(d.Results) != 1 || d.Results[0].TenantID != "kept" {
		t.Fatalf("deployment %s of %d tenants: %+v", d.Status, d.TenantsTotal, d.Results)
	}
}

// TestTransactionsOfOneQueryAreVersionsOfTheirOwn: a Query that commits a
// transaction and goes on makes one version per transaction, as it
// committed in the workspace; one version of both would run in one
// transaction on tenants, where an enum value added and then used fails
// (55P04 unsafe use of new value).
func TestTransactionsOfOneQueryAreVersionsOfTheirOwn(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	workspaceDDL(t, e, "CREATE TYPE mood AS ENUM ('a')")
	e.CreateTenant(t, "wayne")
	workspaceDDL(t, e, "BEGIN; ALTER TYPE mood ADD VALUE 'b'; COMMIT; CREATE TABLE t (m mood DEFAULT 'b')")
	var versions []struct {
		Version    int      `json:"version"`
		Statements []string `json:"statements"`
	}
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	var got [][]string
	for _, v := range versions {
		got = append(got, v.Statements)
	}
	want := [][]string{{"CREATE TYPE mood AS ENUM ('a')"}, {"ALTER TYPE mood ADD VALUE 'b'"}, {"CREATE TABLE t (m mood DEFAULT 'b')"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("versions %q, want %q", got, want)
	}
	d := waitDeployment(t, e, deploy(t, e, map[string]any{"blueprint": "myapp", "all": true}).ID)
	if d.Status != "completed" || schemaVersion(t, e, "wayne") != 3 || !hasColumn(t, e, "wayne", "t", "m") {
		t.Fatalf("deployment %+v, wayne at version %d", d, schemaVersion(t, e, "wayne"))
	}
}

// TestFailedConcurrentIndexLeavesNothing: a CREATE UNIQUE INDEX
// CONCURRENTLY that fails in the workspace (duplicates) leaves an invalid
// index there, which no version makes. The proxy drops it before the
// client sees the batch end, so the workspace and its tenants stay alike:
// the statement runs again once the duplicates are gone, and a tenant gets
// the index from its version.
func TestFailedConcurrentIndexLeavesNothing(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	execAll(t, ws, "CREATE TABLE u (id int, email text)", "INSERT INTO u VALUES (1, 'a'), (2, 'a')")
	const build = "CREATE UNIQUE INDEX CONCURRENTLY u_email ON u (email)"
	_, err := ws.Exec(ctx, build, pgx.QueryExecModeSimpleProtocol)
	if pe := pgErr(t, err); pe.Code != "23505" {
		t.Fatalf("the build over duplicates: %s %s", pe.Code, pe.Message)
	}
	var left bool
	if err := ws.QueryRow(ctx, "SELECT to_regclass('u_email') IS NOT NULL").Scan(&left); err != nil || left {
		t.Fatalf("the failed build's index is still there: %v, %v", left, err)
	}
	execAll(t, ws, "DELETE FROM u WHERE id = 2", build)

	e.CreateTenant(t, "wayne")
	var valid bool
	if err := superuser(t, e, "wayne").QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'u_email'::regclass").Scan(&valid); err != nil || !valid {
		t.Fatalf("the tenant's index: valid %v, %v", valid, err)
	}
}

// TestVersionsCarryTheSessionSettings: DDL whose constants depend on the
// session's TimeZone and DateStyle (a timestamptz default, a partition
// bound, a date default) means the same on tenants as in the workspace
// session that ran it: its version carries those settings and tenants run
// it with them. A change of them in the same query as DDL, or in a
// transaction that already holds DDL, is refused.
func TestVersionsCarryTheSessionSettings(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	e.CreateTenant(t, "wayne")
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require")+"&timezone=America/New_York")
	for _, sql := range []string{
		"CREATE TABLE ev (at timestamptz DEFAULT '2024-01-01 00:00')",
		"SET DateStyle = 'ISO, DMY'",
		"CREATE TABLE p (at timestamptz, d date DEFAULT '02/01/2024') PARTITION BY RANGE (at)",
		"CREATE TABLE p24 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
	} {
		if _, err := ws.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, sql := range []string{
		"SET TIME ZONE 'UTC'; CREATE TABLE no1 (id int)",
		"SET LOCAL DateStyle = 'ISO, MDY'; CREATE TABLE no1 (id int)",
	} {
		_, err := ws.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if pe := pgErr(t, err); pe.Code != "0A000" || !strings.Contains(pe.Message, "same query as a change of") {
			t.Fatalf("%s: %s %s", sql, pe.Code, pe.Message)
		}
	}
	for _, sql := range []string{"BEGIN", "CREATE TABLE no2 (id int)", "SET LOCAL TimeZone = 'UTC'"} {
		if _, err := ws.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_, err := ws.Exec(ctx, "CREATE TABLE no3 (id int)")
	if pe := pgErr(t, err); pe.Code != "0A000" || !strings.Contains(pe.Message, "after a change of TimeZone") {
		t.Fatalf("DDL after a change of TimeZone in its transaction: %s %s", pe.Code, pe.Message)
	}
	if _, err := ws.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// A COMMIT of a transaction that changed one of them gives it back
	// its value, which PostgreSQL reports only at the end of the query:
	// DDL behind it in the same query is refused.
	for _, sql := range []string{"BEGIN", "SET LOCAL TimeZone = 'Asia/Tokyo'"} {
		if _, err := ws.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_, err = ws.Exec(ctx, "COMMIT; CREATE TABLE no5 (at timestamptz DEFAULT '2024-01-01')", pgx.QueryExecModeSimpleProtocol)
	if pe := pgErr(t, err); pe.Code != "0A000" || !strings.Contains(pe.Message, "after a COMMIT, ROLLBACK or ROLLBACK TO of an open transaction") {
		t.Fatalf("DDL behind the COMMIT of a SET LOCAL: %s %s", pe.Code, pe.Message)
	}
	if _, err := ws.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// A DDL statement prepared earlier, bound in a pipeline behind a SET
	// of one of them, is refused: it would run with a value the proxy sees
	// only at the batch's end. The session stays usable.
	fe := ws.PgConn().Frontend()
	send(t, fe, &pgproto3.Parse{Name: "later", Query: "CREATE TABLE no4 (at timestamptz DEFAULT '2024-01-01')"}, &pgproto3.Sync{})
	if got := answers(t, fe); !slices.Equal(got, []string{"1", "Z I"}) {
		t.Fatalf("prepare: %q", got)
	}
	send(t, fe, &pgproto3.Parse{Query: "SET TimeZone = 'Asia/Tokyo'"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "later"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := answers(t, fe); !slices.Equal(got, []string{"1", "2", "SET", "E 0A000", "Z I"}) {
		t.Fatalf("a prepared DDL bound behind a SET TimeZone: %q", got)
	}
	// Bound before the SET runs, it would still run after it.
	send(t, fe, &pgproto3.Parse{Query: "SET TimeZone = 'Asia/Tokyo'"}, &pgproto3.Bind{DestinationPortal: "p1"},
		&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "later"},
		&pgproto3.Execute{Portal: "p1"}, &pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{})
	if got := answers(t, fe); !slices.Equal(got, []string{"1", "2", "E 0A000", "Z I"}) {
		t.Fatalf("a prepared DDL bound before a SET TimeZone runs: %q", got)
	}
	if _, err := ws.Exec(ctx, "RESET TimeZone"); err != nil {
		t.Fatal(err)
	}

	var versions []struct {
		Version  int                  `json:"version"`
		Settings *fsm.SessionSettings `json:"settings"`
	}
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 3 {
		t.Fatalf("%d versions, want 3", len(versions))
	}
	for i, style := range []string{"ISO, MDY", "ISO, DMY", "ISO, DMY"} {
		if s := versions[i].Settings; s == nil || s.TimeZone != "America/New_York" || s.DateStyle != style || s.IntervalStyle == "" {
			t.Fatalf("version %d settings %+v, want America/New_York and %s", i+1, s, style)
		}
	}

	d := waitDeployment(t, e, deploy(t, e, map[string]any{"blueprint": "myapp", "all": true}).ID)
	if d.Status != "completed" {
		t.Fatalf("deployment %+v", d)
	}
	// Read back in UTC, in the workspace and in the tenant: the same
	// instants and dates.
	read := func(db string) []string {
		t.Helper()
		cfg, err := pgx.ParseConfig(e.PG.URL())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Database = db
		cfg.RuntimeParams["timezone"] = "UTC"
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var def, bound, date string
		err = c.QueryRow(ctx, `SELECT
			(SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'ev'::regclass),
			(SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'p24'::regclass),
			(SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'p'::regclass)`).Scan(&def, &bound, &date)
		if err != nil {
			t.Fatal(err)
		}
		return []string{def, bound, date}
	}
	inWorkspace := read(e.Physical(t, fsm.WorkspaceDatabase("myapp")))
	if !strings.Contains(inWorkspace[0], "2024-01-01 05:00:00+00") || !strings.Contains(inWorkspace[2], "2024-01-02") {
		t.Fatalf("the workspace's constants %q were not read in its session's settings", inWorkspace)
	}
	if inTenant := read(physical(t, e, "wayne")); !slices.Equal(inTenant, inWorkspace) {
		t.Fatalf("tenant has %q, the workspace %q", inTenant, inWorkspace)
	}
}

// TestVersionSettingsAfterTheProxysRollback: a setting that the proxy's own
// ROLLBACK (a batch past the row limit) gives back its value is reported
// during the proxy's exchange; the next version carries the value back.
func TestVersionSettingsAfterTheProxysRollback(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require")+"&timezone=America/New_York")
	if _, err := ws.Exec(ctx, "CREATE TABLE n (g int)"); err != nil {
		t.Fatal(err)
	}
	setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
	_, err := ws.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'; INSERT INTO n SELECT g FROM generate_series(1, 10) g RETURNING g", pgx.QueryExecModeSimpleProtocol)
	wantPgError(t, err, "ERROR", "54000", "query returned more than max_rows_per_query (5) rows")
	if tz := ws.PgConn().ParameterStatus("TimeZone"); tz != "America/New_York" {
		t.Fatalf("the client was told TimeZone %q", tz)
	}
	if _, err := ws.Exec(ctx, "CREATE TABLE ev (at timestamptz DEFAULT '2024-01-01 00:00')"); err != nil {
		t.Fatal(err)
	}
	var versions []struct {
		Settings *fsm.SessionSettings `json:"settings"`
	}
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 2 || versions[1].Settings == nil || versions[1].Settings.TimeZone != "America/New_York" {
		t.Fatalf("versions %+v, want the second with America/New_York", versions)
	}
}

// TestRefusedConcurrentIndexDropsNothing: a CREATE INDEX CONCURRENTLY the
// proxy refuses (here its wait for the capture lock fails; so does one on
// a node that cannot reach the leader) never ran, so it left no invalid
// index to drop. One of its name there is another session's: a build still
// under way holds the capture lock and has made its index, not valid yet.
// Dropping it would part the workspace from the version that build records.
func TestRefusedConcurrentIndexDropsNothing(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	execAll(t, ws, "CREATE TABLE u (id int, email text)", "INSERT INTO u VALUES (1, 'a'), (2, 'a')")
	cfg, err := pgx.ParseConfig(e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = e.Physical(t, "myapp_workspace")
	other, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	// The other session's build, as it stands mid-way: the capture lock
	// held, an invalid index of the name (a unique build over duplicates
	// stops there).
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(backend.CaptureLockKey)); err != nil {
		t.Fatal(err)
	}
	const build = "CREATE UNIQUE INDEX CONCURRENTLY u_email ON u (email)"
	if _, err := other.Exec(ctx, build); pgErr(t, err).Code != "23505" {
		t.Fatalf("the other session's build: %v", err)
	}
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := ws.Exec(ctx, "SET lock_timeout = '300ms'", simple); err != nil {
		t.Fatal(err)
	}
	_, err = ws.Exec(ctx, build, simple)
	if pe := pgErr(t, err); pe.Code != "55P03" {
		t.Fatalf("the build past lock_timeout: %s %s", pe.Code, pe.Message)
	}
	var left bool
	if err := other.QueryRow(ctx, "SELECT to_regclass('u_email') IS NOT NULL").Scan(&left); err != nil || !left {
		t.Fatalf("the refused build dropped the other session's index: %v, %v", left, err)
	}
}
