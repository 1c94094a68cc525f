package node_test

import (
	"context"
	"encoding/json"
	neturl "net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
)

type queryOut struct {
	Columns      []string `json:"columns"`
	ColumnTypes  []string `json:"column_types"`
	Rows         [][]any  `json:"rows"`
	CommandTag   string   `json:"command_tag"`
	RowsAffected int64    `json:"rows_affected"`
	Code         string   `json:"code"`
	Message      string   `json:"message"`
	SQLState     string   `json:"sqlstate"`
}

func query(t *testing.T, e *testnode.Env, key, tenant, sql string, params ...any) (int, queryOut) {
	t.Helper()
	var out queryOut
	body := map[string]any{"sql": sql}
	if params != nil {
		body["params"] = params
	}
	status := e.Do(t, "POST", "/v1/tenants/"+tenant+"/query", key, "", body, &out)
	return status, out
}

func TestTenantQueryEndpoint(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	workspaceDDL(t, e, seedAccounts)
	admin := e.CreateTenant(t, "wayne")
	e.CreateTenant(t, "globex")
	read := e.CreateKey(t, "read", "tenant", "wayne")
	wsWrite := e.CreateKey(t, "write", "workspace", "myapp")
	globex := e.CreateKey(t, "admin", "tenant", "globex")

	// Rows come back as JSON, typed by column.
	status, out := query(t, e, admin, "wayne",
		"INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3) RETURNING id, name, balance, created_at IS NOT NULL AS stamped",
		"Alice", "alice@test.com", 1000)
	if status != 200 || out.CommandTag != "INSERT 0 1" || out.RowsAffected != 1 ||
		!reflect.DeepEqual(out.Columns, []string{"id", "name", "balance", "stamped"}) ||
		!reflect.DeepEqual(out.ColumnTypes, []string{"int4", "varchar", "numeric", "bool"}) ||
		!reflect.DeepEqual(out.Rows, [][]any{{1.0, "Alice", 1000.0, true}}) {
		t.Fatalf("insert: %d %+v", status, out)
	}
	status, out = query(t, e, read, "wayne", `SELECT '{"a": [1]}'::jsonb AS j, NULL AS n, 'NaN'::float8 AS f, 9007199254740993::int8 AS big, email FROM accounts WHERE name = $1`, "Alice")
	if status != 200 || len(out.Rows) != 1 || !reflect.DeepEqual(out.Rows[0][:4], []any{map[string]any{"a": []any{1.0}}, nil, "NaN", 9007199254740992.0}) ||
		out.Rows[0][4] != "alice@test.com" || out.CommandTag != "SELECT 1" {
		t.Fatalf("select: %d %+v", status, out)
	}

	// A read key's INSERT fails in PostgreSQL: 403 permission_denied.
	status, out = query(t, e, read, "wayne", "INSERT INTO accounts (name, email) VALUES ('Bob', 'bob@test.com')")
	if status != 403 || out.Code != "permission_denied" || out.Message != "permission denied for table accounts" || out.SQLState != "42501" {
		t.Fatalf("read key insert: %d %+v", status, out)
	}
	// The same at the path the product documentation names, without /v1.
	out = queryOut{}
	status = e.Do(t, "POST", "/tenants/wayne/query", read, "", map[string]any{"sql": "INSERT INTO accounts (name, email) VALUES ('Bob', 'bob@test.com')"}, &out)
	if status != 403 || out.Code != "permission_denied" || out.SQLState != "42501" {
		t.Fatalf("read key insert at /tenants/{id}/query: %d %+v", status, out)
	}
	// DDL gets the wire proxy's refusal, alone or hidden after a SELECT.
	for _, sql := range []string{"CREATE TABLE x (id int)", "SELECT 1; DROP TABLE accounts"} {
		status, out = query(t, e, admin, "wayne", sql)
		if status != 403 || out.Code != "permission_denied" || out.Message != "DDL not allowed on tenant databases, use workspace mode" || out.SQLState != "42501" {
			t.Fatalf("DDL %q: %d %+v", sql, status, out)
		}
	}
	// Other PostgreSQL errors: 400 with the SQLSTATE.
	status, out = query(t, e, admin, "wayne", "SELEC 1")
	if status != 400 || out.Code != "query_error" || out.SQLState != "42601" || out.Message != `syntax error at or near "SELEC"` {
		t.Fatalf("syntax error: %d %+v", status, out)
	}
	status, out = query(t, e, admin, "wayne", "INSERT INTO accounts (name, email) VALUES ('Alice2', 'alice@test.com')")
	if status != 400 || out.SQLState != "23505" {
		t.Fatalf("unique violation: %d %+v", status, out)
	}
	status, out = query(t, e, admin, "wayne", "BEGIN")
	if status != 400 || out.Code != "bad_request" {
		t.Fatalf("BEGIN: %d %+v", status, out)
	}

	// Scope: a workspace key reaches every tenant of myapp, globex's key only globex.
	if status, out = query(t, e, wsWrite, "wayne", "SELECT count(*) AS n FROM accounts"); status != 200 || out.Rows[0][0] != 1.0 {
		t.Fatalf("workspace key: %d %+v", status, out)
	}
	if status, out = query(t, e, globex, "wayne", "SELECT 1"); status != 403 || out.Code != "scope_denied" {
		t.Fatalf("other tenant's key: %d %+v", status, out)
	}

	// The workspace's limits apply; past the row cap nothing is changed.
	e.MustDo(t, "PATCH", "/v1/workspaces/myapp/settings", e.ProxyPassword, "", map[string]any{"max_rows_per_query": 5, "query_timeout_ms": 300}, nil)
	status, out = query(t, e, admin, "wayne", "INSERT INTO accounts (name, email) SELECT 'n' || i, i || '@x' FROM generate_series(1, 10) i RETURNING id")
	if status != 400 || out.SQLState != "54000" || out.Message != "query returned more than max_rows_per_query (5) rows" {
		t.Fatalf("row cap: %d %+v", status, out)
	}
	if status, out = query(t, e, admin, "wayne", "SELECT count(*) FROM accounts"); status != 200 || out.Rows[0][0] != 1.0 {
		t.Fatalf("rows after the capped insert: %d %+v", status, out)
	}
	status, out = query(t, e, admin, "wayne", "SELECT pg_sleep(5)")
	if status != 400 || out.SQLState != "57014" || out.Message != "canceling statement due to query_timeout_ms (300 ms)" {
		t.Fatalf("timeout: %d %+v", status, out)
	}
	var raw json.RawMessage
	if status := e.Do(t, "POST", "/v1/tenants/nobody/query", admin, "", map[string]any{"sql": "SELECT 1"}, &raw); status != 403 && status != 404 {
		t.Fatalf("unknown tenant: %d %s", status, raw)
	}

	// The endpoint's statements are in the query log, as the wire proxy's are.
	var logs struct {
		Entries []struct {
			Node, Database, Workspace, Tenant, KeyID, Role, Statement, SQLState string
			Rows                                                                int64
		} `json:"entries"`
	}
	e.MustDo(t, "GET", "/v1/logs?tenant=wayne", e.ProxyPassword, "", nil, &logs)
	seen := map[string]string{}
	for _, en := range logs.Entries {
		if en.Database != "myapp__wayne" || en.Workspace != "myapp" || en.Tenant != "wayne" || en.Node == "" || en.Role == "" {
			t.Fatalf("log entry %+v", en)
		}
		seen[en.Statement] = en.SQLState
		if strings.HasPrefix(en.Statement, "INSERT INTO accounts (name, email, balance)") && en.Rows != 1 {
			t.Fatalf("rows of the insert: %+v", en)
		}
	}
	for sql, code := range map[string]string{
		"SELEC 1":                 "42601",
		"CREATE TABLE x (id int)": "42501",
		"SELECT pg_sleep(5)":      "57014",
		"INSERT INTO accounts (name, email) VALUES ('Bob', 'bob@test.com')": "42501",
	} {
		if seen[sql] != code {
			t.Errorf("query log: %q has %q, want %q (log: %v)", sql, seen[sql], code, seen)
		}
	}
}

// TestTenantQueryEndpointHidesRoles: when the backend refuses the login the
// proxy makes for a key, the answer does not name the internal role.
func TestTenantQueryEndpointHidesRoles(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	key := e.CreateTenant(t, "wayne")
	read := e.CreateKey(t, "read", "tenant", "wayne")
	db := e.Physical(t, fsm.TenantDatabase("myapp", "wayne"))
	su, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	role := backend.RoleName(db, backend.RoleRead)
	if _, err := su.Exec(ctx, `ALTER ROLE "`+role+`" PASSWORD 'changed-behind-tdb'`); err != nil {
		t.Fatal(err)
	}
	status, out := query(t, e, read, "wayne", "SELECT 1")
	if status != 502 || out.Code != "backend_error" || out.Message != "the database backend refused the connection" || out.SQLState != "28P01" {
		t.Fatalf("got %d %+v", status, out)
	}
	if strings.Contains(out.Message, db) {
		t.Fatalf("the message names the role: %q", out.Message)
	}
	if status, _ := query(t, e, key, "wayne", "SELECT 1"); status != 200 {
		t.Fatalf("the admin key's role was not touched, got %d", status)
	}
}

// TestTenantQueryHoldsAConnection: a call of the query endpoint opens a
// backend connection, so while it runs it holds a connection of the
// tenant's database and of its client's IP, as a wire client does: it gets
// the wire proxy's refusal past max_connections or max_conns_per_ip, and a
// wire client is refused while it runs.
func TestTenantQueryHoldsAConnection(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	workspaceDDL(t, e, seedAccounts)
	key := e.CreateTenant(t, "wayne")
	ctx := context.Background()
	url := e.ConnString(key, "myapp__wayne", "disable")
	setWorkspace(t, e, map[string]int64{"max_connections": 1})
	c := connect(t, url)
	status, out := query(t, e, key, "wayne", "SELECT 1")
	if status != 429 || out.Code != "rate_limited" || out.SQLState != "53300" || out.Message != `too many connections for database "myapp__wayne" (max_connections 1)` {
		t.Fatalf("a call past max_connections: %d %+v", status, out)
	}
	c.Close(ctx)
	waitFor(t, "the wire client's slot to free", func() bool {
		status, _ := query(t, e, key, "wayne", "SELECT 1")
		return status == 200
	})

	// The call waits for an advisory lock a direct session holds, so it
	// runs until the test lets it go, however slow the machine.
	direct, err := neturl.Parse(e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	direct.Path = "/" + e.Physical(t, fsm.TenantDatabase("myapp", "wayne"))
	holder := connect(t, direct.String())
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		var out queryOut
		done <- e.Do(t, "POST", "/v1/tenants/wayne/query", key, "", map[string]any{"sql": "SELECT pg_advisory_lock(4242)"}, &out)
	}()
	waitFor(t, "a wire client to be refused while the call runs", func() bool {
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			c.Close(ctx)
			return false
		}
		wantPgError(t, err, "FATAL", "53300", `too many connections for database "myapp__wayne" (max_connections 1)`)
		return true
	})
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock(4242)"); err != nil {
		t.Fatal(err)
	}
	if status := <-done; status != 200 {
		t.Fatalf("the long call: %d", status)
	}
	held := connect(t, url) // the call's slot is free again
	mustSelectOne(t, held)

	// The wire client holds its IP's one connection.
	setWorkspace(t, e, map[string]int64{"max_connections": 0})
	setCluster(t, e, map[string]int64{"max_conns_per_ip": 1})
	status, out = query(t, e, key, "wayne", "SELECT 1")
	if status != 429 || out.Message != "connection rejected: too many connections from your IP (max_conns_per_ip 1)" || out.SQLState != "53300" {
		t.Fatalf("a call past max_conns_per_ip: %d %+v", status, out)
	}
}

// TestTenantQueryNUL: SQL text with a NUL character is refused with a clear
// 400 before anything is sent; PostgreSQL's protocol cannot carry it (the
// backend saw a malformed message and answered 08P01 "insufficient data
// left in message").
func TestTenantQueryNUL(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	workspaceDDL(t, e, seedAccounts)
	admin := e.CreateTenant(t, "wayne")
	status, out := query(t, e, admin, "wayne", "SELECT 1\x00; DELETE FROM accounts")
	if status != 400 || out.Code != "bad_request" || !strings.Contains(out.Message, "NUL") {
		t.Fatalf("NUL in sql: %d %+v", status, out)
	}
}
