package node_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/internal/testnode"
)

type schemaResp struct {
	Source   string    `json:"source"`
	Method   string    `json:"method"`
	DDLCount int       `json:"ddl_count"`
	Versions []version `json:"versions"`
	Code     string    `json:"code"`
	Message  string    `json:"message"`
	SQLState string    `json:"sqlstate"`
}

func postSchema(t *testing.T, e *testnode.Env, workspace string, body map[string]string) (int, schemaResp) {
	t.Helper()
	var out schemaResp
	status := e.Do(t, "POST", "/v1/workspaces/"+workspace+"/schema", e.ProxyPassword, "", body, &out)
	return status, out
}

func TestWorkspaceSchemaTemplateAndImport(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()

	status, out := postSchema(t, e, "myapp", map[string]string{"template": "saas"})
	if status != 201 || out.Source != "template:saas" || out.DDLCount != 3 || len(out.Versions) != 1 || out.Versions[0].Version != 1 {
		t.Fatalf("template: %d %+v", status, out)
	}
	// Again: the tables exist; 409 with PostgreSQL's message, nothing recorded.
	status, out = postSchema(t, e, "myapp", map[string]string{"template": "saas"})
	if status != 409 || out.Code != "conflict" || out.SQLState != "42P07" || out.Message != `relation "accounts" already exists` {
		t.Fatalf("template again: %d %+v", status, out)
	}
	for _, body := range []map[string]string{{"template": "nope"}, {}, {"template": "saas", "from_url": "postgres://x@h/db"}} {
		if status, out = postSchema(t, e, "myapp", body); status != 400 || out.Code != "bad_request" {
			t.Fatalf("%v: %d %+v", body, status, out)
		}
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 1 {
		t.Fatalf("versions %+v", versions)
	}
	// The workspace's write key uses the template's tables; a new tenant has them.
	write := e.CreateKey(t, "write", "workspace", "myapp")
	ws := connect(t, e.ConnString(write, "myapp_workspace", "require"))
	if _, err := ws.Exec(ctx, "INSERT INTO accounts (name) VALUES ('acme')"); err != nil {
		t.Fatal(err)
	}
	key := e.CreateTenant(t, "wayne")
	tc := connect(t, e.ConnString(key, "myapp__wayne", "require"))
	if _, err := tc.Exec(ctx, "WITH a AS (INSERT INTO accounts (name) VALUES ('w') RETURNING id) INSERT INTO users (account_id, email) SELECT id, 'u@w' FROM a"); err != nil {
		t.Fatalf("tenant at the template's version: %v", err)
	}

	// Import an existing database's schema into a new workspace.
	src, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	srcDB := "legacy_" + e.ProjectID
	if _, err := src.Exec(ctx, "CREATE DATABASE "+srcDB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = src.Exec(context.Background(), "DROP DATABASE "+srcDB+" WITH (FORCE)") })
	u, _ := url.Parse(e.PG.URL())
	u.Path = "/" + srcDB
	sc, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	if _, err := sc.Exec(ctx, seedAccounts+"; CREATE TABLE notes (id int PRIMARY KEY, account_id int REFERENCES accounts (id), body text); INSERT INTO accounts (name, email) VALUES ('x', 'y')"); err != nil {
		t.Fatal(err)
	}
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "shop", "mode": "tenant"}, nil)
	status, out = postSchema(t, e, "shop", map[string]string{"from_url": u.String()})
	if status != 201 || out.Source != "url" || out.Method != "pg_dump" || len(out.Versions) != 1 || out.Versions[0].Version != 1 || out.DDLCount < 4 {
		t.Fatalf("import: %d %+v", status, out)
	}
	// Only into a workspace without versions.
	if status, out = postSchema(t, e, "shop", map[string]string{"from_url": u.String()}); status != 409 || out.Code != "conflict" {
		t.Fatalf("import again: %d %+v", status, out)
	}
	var n int
	shop := connect(t, e.ConnString(e.ProxyPassword, "shop_workspace", "require"))
	if err := shop.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil || n != 0 {
		t.Fatalf("imported accounts: %d rows, %v (the schema only, no rows)", n, err)
	}
	if _, err := shop.Exec(ctx, "INSERT INTO accounts (name, email) VALUES ('a', 'b')"); err != nil {
		t.Fatalf("serial default after import: %v", err)
	}
}

// TestWorkspaceSchemaWaitsForTheCaptureLock: the schema endpoint records
// its version under the workspace's capture lock, as the proxy's sessions
// do: while a session holds it (DDL not yet recorded), the template waits,
// and DDL sent after the template's commit waits for its version.
func TestWorkspaceSchemaWaitsForTheCaptureLock(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = e.Physical(t, "myapp_workspace")
	holder, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(backend.CaptureLockKey)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		status int
		out    schemaResp
	}
	done := make(chan result, 1)
	go func() {
		var out schemaResp
		status := e.Do(t, "POST", "/v1/workspaces/myapp/schema", e.ProxyPassword, "", map[string]string{"template": "blog"}, &out)
		done <- result{status, out}
	}()
	// The endpoint's session waits for the lock, with nothing committed.
	for {
		var waiting bool
		err := holder.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = 'tdb-schema')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("the schema endpoint answered while the capture lock was held: %d %+v", r.status, r.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 0 {
		t.Fatalf("versions recorded while the lock was held: %+v", versions)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(backend.CaptureLockKey)); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.status != 201 || len(r.out.Versions) != 1 {
		t.Fatalf("after the lock: %d %+v", r.status, r.out)
	}
}
