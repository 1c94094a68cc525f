package node_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/node"
)

const legacySchema = `
CREATE TABLE companies (id int PRIMARY KEY, tenant_id text NOT NULL, name text);
CREATE TABLE users (id serial PRIMARY KEY, tenant_id text NOT NULL, company_id int REFERENCES companies (id), email text UNIQUE);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), total numeric);
CREATE TABLE order_lines (order_id bigint REFERENCES orders (id), line int, qty int, PRIMARY KEY (order_id, line));
CREATE TABLE settings (key text PRIMARY KEY, value text);
INSERT INTO companies VALUES (1, 'acme', 'Acme'), (2, 'Globex Corp', 'Globex'), (3, '42', 'Answer');
INSERT INTO users (tenant_id, company_id, email) VALUES ('acme', 1, 'a@acme'), ('acme', 1, 'b@acme'), ('Globex Corp', 2, 'g@globex'), ('42', 3, 'x@42');
INSERT INTO orders (user_id, total) VALUES (1, 10), (2, 20), (3, 30), (4, 40);
INSERT INTO order_lines VALUES (1, 1, 1), (1, 2, 5), (2, 1, 1), (3, 1, 9), (4, 1, 2);
INSERT INTO settings VALUES ('k', 'v');`

type importResp struct {
	ID               string   `json:"id"`
	Status           string   `json:"status"`
	TenantsTotal     int      `json:"tenants_total"`
	TenantsCompleted int      `json:"tenants_completed"`
	RowsCopied       int64    `json:"rows_copied"`
	Tables           []string `json:"tables"`
	Lookups          []string `json:"lookups"`
	Unrouted         []string `json:"unrouted"`
	NotCopied        []string `json:"not_copied"`
	Tenants          []struct {
		TenantID         string `json:"tenant_id"`
		RoutingValue     string `json:"routing_value"`
		Status           string `json:"status"`
		Rows             int64  `json:"rows"`
		Attempts         int    `json:"attempts"`
		ConnectionString string `json:"connection_string"`
	} `json:"tenants"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// legacyDB creates the source database of an import on the test server.
func legacyDB(t *testing.T, e *testnode.Env) string {
	t.Helper()
	return sourceDB(t, e, "legacy_import_", legacySchema)
}

// sourceDB creates a database on the test server, named prefix plus the
// project id, with schema in it, and returns its URL.
func sourceDB(t *testing.T, e *testnode.Env, prefix, schema string) string {
	t.Helper()
	ctx := context.Background()
	su, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	name := prefix + e.ProjectID
	if _, err := su.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = su.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
		su.Close(context.Background())
	})
	u, _ := url.Parse(e.PG.URL())
	u.Path = "/" + name
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	return u.String()
}

func waitImport(t *testing.T, e *testnode.Env, id string) importResp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.Node.FSM().WaitFor(ctx, func(s *fsm.State) bool {
		im := s.Imports[id]
		return im != nil && im.Status != fsm.DeploymentInProgress
	}); err != nil {
		t.Fatalf("import %s did not finish: %v", id, err)
	}
	var out importResp
	e.MustDo(t, "GET", "/v1/imports/"+id, e.ProxyPassword, "", nil, &out)
	return out
}

func TestImportFull(t *testing.T) {
	e := testnode.Start(t)
	ctx := context.Background()
	src := legacyDB(t, e)

	// One tenant is busy when the copy starts, and the node restarts meanwhile.
	var im importResp
	status := e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": src, "routing_field": "tenant_id", "concurrency": 1}, &im)
	if status != 202 || im.TenantsTotal != 3 || len(im.Unrouted) != 1 || im.Unrouted[0] != "public.settings" ||
		len(im.Tables) != 4 || im.Tables[0] != "public.companies" {
		t.Fatalf("import-full: %d %+v", status, im)
	}
	keys := map[string]string{}
	values := map[string]string{}
	for _, tn := range im.Tenants {
		u, err := url.Parse(tn.ConnectionString)
		if err != nil {
			t.Fatal(err)
		}
		keys[tn.TenantID], _ = u.User.Password()
		values[tn.TenantID] = tn.RoutingValue
	}
	if values["acme"] != "acme" || values["globex_corp"] != "Globex Corp" || values["t_42"] != "42" || keys["acme"] == "" {
		t.Fatalf("tenants %+v", im.Tenants)
	}
	im = waitImport(t, e, im.ID)
	if im.Status != fsm.DeploymentCompleted || im.TenantsCompleted != 3 || im.RowsCopied != 3+4+4+5 {
		t.Fatalf("import %+v", im)
	}
	// A rerun does not copy again.
	var again importResp
	if status := e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": src, "routing_field": "tenant_id"}, &again); status != 409 || again.Code != "conflict" {
		t.Fatalf("rerun: %d %+v", status, again)
	}

	// Each tenant has its rows only, through the proxy with its own key.
	c := connect(t, e.ConnString(keys["acme"], "myapp__acme", "require"))
	var users, lines int
	if err := c.QueryRow(ctx, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM order_lines)").Scan(&users, &lines); err != nil || users != 2 || lines != 3 {
		t.Fatalf("acme: %d users, %d lines, %v", users, lines, err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM settings").Scan(&n); err != nil || n != 0 {
		t.Fatalf("unrouted table copied: %d, %v", n, err)
	}
	var id int
	if err := c.QueryRow(ctx, "INSERT INTO users (tenant_id, email) VALUES ('acme', 'new@acme') RETURNING id").Scan(&id); err != nil || id != 3 {
		t.Fatalf("insert after import: id %d, %v", id, err)
	}
	g := connect(t, e.ConnString(keys["globex_corp"], "myapp__globex_corp", "require"))
	var email string
	if err := g.QueryRow(ctx, "SELECT string_agg(email, ',') FROM users").Scan(&email); err != nil || email != "g@globex" {
		t.Fatalf("globex users %q, %v", email, err)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 1 {
		t.Fatalf("versions %+v", versions)
	}
}

// TestImportResumesAfterRestart stops the node while a tenant's copy waits
// for its source snapshot (held up by a serializable writer on the source);
// the restarted node copies that tenant again, without duplicates.
func TestImportResumesAfterRestart(t *testing.T) {
	e := testnode.Start(t)
	ctx := context.Background()
	src := legacyDB(t, e)

	writer, err := pgx.Connect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	tx, err := writer.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE settings SET value = 'w'"); err != nil {
		t.Fatal(err)
	}
	var im importResp
	if status := e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": src, "routing_field": "tenant_id", "concurrency": 1}, &im); status != 202 {
		t.Fatalf("import-full: %d %+v", status, im)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var running string // the tenant whose copy is held up (whichever was ready first)
	if err := e.Node.FSM().WaitFor(wctx, func(s *fsm.State) bool {
		for _, tn := range s.Imports[im.ID].Tenants {
			if tn.Status == fsm.TenantRunning {
				running = tn.Tenant
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	e.Restart(t)
	_ = tx.Rollback(ctx)
	im = waitImport(t, e, im.ID)
	if im.Status != fsm.DeploymentCompleted || im.RowsCopied != 3+4+4+5 {
		t.Fatalf("after restart %+v", im)
	}
	for _, tn := range im.Tenants {
		if want := map[bool]int{true: 2, false: 1}[tn.TenantID == running]; tn.Attempts != want {
			t.Fatalf("tenant %s: %d attempts, want %d (interrupted: %s)", tn.TenantID, tn.Attempts, want, running)
		}
	}
}

// TestImportReportsWhatItCannotRoute: a partitioned table is copied through
// its parent, and rows that reach no routing value (a NULL one, or a NULL
// foreign key on the way) are counted in not_copied instead of vanishing.
func TestImportReportsWhatItCannotRoute(t *testing.T) {
	e := testnode.Start(t)
	src := sourceDB(t, e, "unroutable_", `
CREATE TABLE customers (id int PRIMARY KEY, tenant_id text, name text);
CREATE TABLE notes (id int PRIMARY KEY, customer_id int REFERENCES customers (id), body text);
CREATE TABLE events (tenant_id text NOT NULL, id int, PRIMARY KEY (tenant_id, id)) PARTITION BY LIST (tenant_id);
CREATE TABLE events_acme PARTITION OF events FOR VALUES IN ('acme');
CREATE TABLE events_rest PARTITION OF events DEFAULT;
INSERT INTO customers VALUES (1, 'acme', 'A'), (2, NULL, 'orphan'), (3, 'globex', 'G');
INSERT INTO notes VALUES (1, 1, 'a'), (2, 2, 'of the orphan'), (3, NULL, 'loose'), (4, 3, 'g');
INSERT INTO events VALUES ('acme', 1), ('acme', 2), ('globex', 1);`)
	var im importResp
	status := e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": src, "routing_field": "tenant_id"}, &im)
	want := []string{"public.customers: 1 row(s) that reach no tenant_id", "public.notes: 2 row(s) that reach no tenant_id"}
	if status != 202 || !slices.Equal(im.NotCopied, want) || !slices.Contains(im.Tables, "public.events") ||
		slices.Contains(im.Tables, "public.events_acme") || im.TenantsTotal != 2 {
		t.Fatalf("import-full: %d %+v", status, im)
	}
	key := "" // only the answer to import-full shows the tenants' keys
	for _, tn := range im.Tenants {
		if tn.TenantID == "acme" {
			u, _ := url.Parse(tn.ConnectionString)
			key, _ = u.User.Password()
		}
	}
	im = waitImport(t, e, im.ID)
	if im.Status != fsm.DeploymentCompleted || im.RowsCopied != 2+2+3 || !slices.Equal(im.NotCopied, want) {
		t.Fatalf("import %+v", im)
	}
	var events int
	c := connect(t, e.ConnString(key, "myapp__acme", "require"))
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&events); err != nil || events != 2 {
		t.Fatalf("acme's events: %d, %v", events, err)
	}
}

// noVersions fails when workspace myapp has blueprint versions: a refused
// import makes nothing.
func noVersions(t *testing.T, e *testnode.Env) {
	t.Helper()
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 0 {
		t.Fatalf("the refused import left versions %+v", versions)
	}
}

// TestImportForeignKeyCycle: tables whose foreign keys form a cycle copy
// only when those keys are deferrable (a table that depends on the cycle
// by an ordinary key copies after it); otherwise import-full says so before
// it makes anything. A cycle among tables that are not copied is left be.
func TestImportForeignKeyCycle(t *testing.T) {
	e := testnode.Start(t)
	cycle := func(deferrable string) string {
		return `
CREATE TABLE a (id int PRIMARY KEY, tenant_id text NOT NULL, b_id int);
CREATE TABLE b (id int PRIMARY KEY, tenant_id text NOT NULL, a_id int REFERENCES a (id) ` + deferrable + `);
ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b (id) ` + deferrable + `;
INSERT INTO a VALUES (1, 'acme', NULL);
INSERT INTO b VALUES (1, 'acme', 1);
UPDATE a SET b_id = 1;
CREATE TABLE posts (id int PRIMARY KEY, a_id int NOT NULL REFERENCES a (id));
INSERT INTO posts VALUES (1, 1);
CREATE TABLE x (id int PRIMARY KEY, y_id int);
CREATE TABLE y (id int PRIMARY KEY, x_id int REFERENCES x (id));
ALTER TABLE x ADD FOREIGN KEY (y_id) REFERENCES y (id);`
	}
	var out importResp
	status := e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": sourceDB(t, e, "cycle_", cycle("")), "routing_field": "tenant_id"}, &out)
	if status != 400 || !strings.Contains(out.Message, "foreign keys form a cycle (public.b -> public.a, public.a -> public.b)") ||
		!strings.Contains(out.Message, "only when its foreign keys are DEFERRABLE") {
		t.Fatalf("a cycle of immediate keys: %d %+v", status, out)
	}
	noVersions(t, e)

	// A tenant of another blueprint keeps its name: the import's acme is acme_2.
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "other"}, nil)
	e.MustDo(t, "POST", "/v1/tenants", e.ProxyPassword, "", map[string]string{"name": "acme", "blueprint": "other"}, nil)
	status = e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": sourceDB(t, e, "dcycle_", cycle("DEFERRABLE")), "routing_field": "tenant_id"}, &out)
	// A cycle of immediate keys among tables not copied (x and y) holds
	// nothing up.
	if status != 202 || len(out.Tenants) != 1 || out.Tenants[0].TenantID != "acme_2" ||
		!slices.Equal(out.Unrouted, []string{"public.x", "public.y"}) {
		t.Fatalf("a cycle of deferrable keys: %d %+v", status, out)
	}
	if im := waitImport(t, e, out.ID); im.Status != fsm.DeploymentCompleted || im.RowsCopied != 3 {
		t.Fatalf("import %+v", im)
	}
}

// TestImportCopiesLookupTablesWhole: a table without the routing field and
// without a way to it that routed tables reference (countries, and the
// regions countries reference) is copied whole into each tenant, or their
// foreign keys would fail every tenant's copy; one nothing copied
// references stays unrouted. A cluster that still has a node of a build
// from before lookups refuses such an import before it makes anything.
func TestImportCopiesLookupTablesWhole(t *testing.T) {
	t.Parallel()
	schema := `
CREATE TABLE regions (id int PRIMARY KEY, name text);
CREATE TABLE countries (code text PRIMARY KEY, region_id int REFERENCES regions (id));
CREATE TABLE customers (id int PRIMARY KEY, tenant_id text NOT NULL, country text REFERENCES countries (code));
CREATE TABLE audit (id int PRIMARY KEY, what text);
INSERT INTO regions VALUES (1, 'Europe'), (2, 'Asia');
INSERT INTO countries VALUES ('fr', 1), ('jp', 2), ('de', 1);
INSERT INTO customers VALUES (1, 'acme', 'fr'), (2, 'globex', 'jp');
INSERT INTO audit VALUES (1, 'x');`

	old := testnode.Start(t, func(cfg *node.Config) { cfg.Cluster.LogVersion = 2 })
	var out importResp
	status := old.Do(t, "POST", "/v1/workspaces/myapp/import-full", old.ProxyPassword, "",
		map[string]any{"from_url": sourceDB(t, old, "lookups_old_", schema), "routing_field": "tenant_id"}, &out)
	if status != 503 || !strings.Contains(out.Message, "lookup tables (public.regions, public.countries) are copied whole") ||
		!strings.Contains(out.Message, "upgrade every node first") {
		t.Fatalf("import-full on a cluster at log version 2: %d %+v", status, out)
	}
	noVersions(t, old)

	e := testnode.Start(t)
	status = e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": sourceDB(t, e, "lookups_", schema), "routing_field": "tenant_id"}, &out)
	if status != 202 || !slices.Equal(out.Lookups, []string{"public.regions", "public.countries"}) ||
		!slices.Equal(out.Unrouted, []string{"public.audit"}) || out.TenantsTotal != 2 {
		t.Fatalf("import-full: %d %+v", status, out)
	}
	key := ""
	for _, tn := range out.Tenants {
		if tn.TenantID == "acme" {
			u, _ := url.Parse(tn.ConnectionString)
			key, _ = u.User.Password()
		}
	}
	im := waitImport(t, e, out.ID)
	if im.Status != fsm.DeploymentCompleted || im.RowsCopied != 2*(2+3+1) {
		t.Fatalf("import %+v", im)
	}
	c := connect(t, e.ConnString(key, "myapp__acme", "require"))
	var countries, regions, customers, audit int
	err := c.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM countries), (SELECT count(*) FROM regions), (SELECT count(*) FROM customers), (SELECT count(*) FROM audit)").
		Scan(&countries, &regions, &customers, &audit)
	if err != nil || countries != 3 || regions != 2 || customers != 1 || audit != 0 {
		t.Fatalf("acme has %d countries, %d regions, %d customers, %d audit rows: %v", countries, regions, customers, audit, err)
	}
}

// TestImportFullRoutingFieldNUL: a routing field no column can have is the
// client's mistake (400), not a failure of the source database (502), and
// nothing is imported.
func TestImportFullRoutingFieldNUL(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	src := legacyDB(t, e)
	var out struct{ Code, Message string }
	status := e.Do(t, "POST", "/v1/workspaces/myapp/import-full", e.ProxyPassword, "",
		map[string]any{"from_url": src, "routing_field": "tenant\x00id"}, &out)
	if status != 400 || out.Code != "bad_request" || !strings.Contains(out.Message, "routing_field") {
		t.Fatalf("import-full with a NUL in routing_field: %d %+v", status, out)
	}
	var ims []json.RawMessage
	e.MustDo(t, "GET", "/v1/imports", e.ProxyPassword, "", nil, &ims)
	if len(ims) != 0 {
		t.Fatalf("imports after a refused request: %s", ims)
	}
}
