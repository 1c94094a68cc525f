package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// accountsTable creates the seed's accounts table in a tenant's physical
// database as its owner, the way a deployment would.
func accountsTable(t *testing.T, e *testnode.Env, tenant string) {
	t.Helper()
	db := e.Physical(t, fsm.TenantDatabase("myapp", tenant))
	err := backend.RunAsOwner(context.Background(), e.PG.URL(), db, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `CREATE TABLE accounts (
			id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL, email VARCHAR(255) UNIQUE NOT NULL,
			balance DECIMAL(15,2) DEFAULT 0, created_at TIMESTAMP DEFAULT NOW())`)
		return err
	})
	if err != nil {
		t.Fatalf("create accounts in %s: %v", db, err)
	}
}

func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect %s: %v", connString, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// goExec runs sql on c in a goroutine, its result unread, and when t ends
// waits for it to return before c is closed (connect's clean-up): the test
// must end the statement (a stop, a cancel, the connection closed).
func goExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Exec(context.Background(), sql, args...)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%q still running 30 s after the test ended", sql)
		}
	})
}

func pgErr(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PostgreSQL error, got %v", err)
	}
	return pe
}

func TestProxyTenantSession(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	ctx := context.Background()
	c := connect(t, e.ConnString(key, "myapp__wayne", "require"))

	physical := e.Physical(t, "myapp__wayne")
	var user, db string
	if err := c.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != physical+"_admin" || db != physical {
		t.Fatalf("logged in as %s on %s, want %s_admin on %s", user, db, physical, physical)
	}
	direct := connect(t, e.PG.URL())
	var want, got string
	_ = direct.QueryRow(ctx, "SHOW server_version").Scan(&want)
	if err := c.QueryRow(ctx, "SHOW server_version").Scan(&got); err != nil || got != want {
		t.Fatalf("server_version through proxy %q (%v), backend %q", got, err, want)
	}
	if ps := c.PgConn().ParameterStatus("server_version"); ps != want {
		t.Fatalf("ParameterStatus server_version %q, want %q", ps, want)
	}

	// Extended protocol, a statement prepared once and reused.
	for i := 0; i < 20; i++ {
		if _, err := c.Exec(ctx, "INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3)",
			fmt.Sprintf("user%d", i), fmt.Sprintf("u%d@test.com", i), i*10); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts WHERE balance >= $1", 50).Scan(&n); err != nil || n != 15 {
		t.Fatalf("count = %d, %v", n, err)
	}

	// A transaction that rolls back leaves nothing.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM accounts"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil || n != 20 {
		t.Fatalf("after rollback count = %d, %v", n, err)
	}

	// DDL is refused before it reaches the backend; the session stays usable.
	for _, sql := range []string{
		"CREATE TABLE evil (id int)",
		"SELECT 1; DROP TABLE accounts",
		"ALTER TABLE accounts ADD COLUMN x int",
	} {
		_, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		pe := pgErr(t, err)
		if pe.Code != "42501" || pe.Message != "DDL not allowed on tenant databases, use workspace mode" {
			t.Fatalf("%s: got %s %q", sql, pe.Code, pe.Message)
		}
	}
	_, err = c.Exec(ctx, "DROP TABLE accounts") // extended protocol: refused at Parse
	if pe := pgErr(t, err); pe.Code != "42501" {
		t.Fatalf("extended DDL: %v", pe)
	}
	// Defence in depth: DDL smuggled past the classifier fails at the backend.
	_, err = c.Exec(ctx, "DO $$ BEGIN EXECUTE 'CREATE TABLE smuggled (id int)'; END $$")
	if pe := pgErr(t, err); pe.Code != "42501" {
		t.Fatalf("smuggled DDL: %v", pe)
	}
	// COPY is refused with its own text, in both directions.
	for _, sql := range []string{"COPY accounts TO STDOUT", "COPY accounts FROM STDIN"} {
		_, err := c.Exec(ctx, sql)
		pe := pgErr(t, err)
		if pe.Code != "0A000" || pe.Message != "COPY is not supported through the proxy; use tdb workspaces import-full or INSERT statements" {
			t.Fatalf("%s: %s %q", sql, pe.Code, pe.Message)
		}
	}
	// A refusal inside a transaction aborts it, as PostgreSQL would.
	tx, _ = c.Begin(ctx)
	_, err = tx.Exec(ctx, "CREATE INDEX ON accounts (name)")
	pgErr(t, err)
	_, err = tx.Exec(ctx, "SELECT 1")
	if pe := pgErr(t, err); pe.Code != "25P02" {
		t.Fatalf("after refusal in tx: %v", pe)
	}
	_ = tx.Rollback(ctx)
	if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil || n != 20 {
		t.Fatalf("session unusable after refusals: %d, %v", n, err)
	}

	// In a transaction an error aborted, PostgreSQL reads the text and then
	// ignores all but COMMIT and ROLLBACK: a refused statement gets the same
	// 25P02, but a syntax error stays one, and after a ROLLBACK in the same
	// Query the refusal stands.
	for _, tc := range []struct {
		sql  string
		mode pgx.QueryExecMode
		code string
	}{
		{"CREATE TABLE evil (id int)", pgx.QueryExecModeSimpleProtocol, "25P02"},
		{"CREATE TABLE evil (id int)", pgx.QueryExecModeExec, "25P02"},
		{"COPY accounts TO STDOUT", pgx.QueryExecModeSimpleProtocol, "25P02"},
		{"SELECT 1; DROP TABLE accounts", pgx.QueryExecModeSimpleProtocol, "25P02"},
		{"CREATE TABLE evil (id int", pgx.QueryExecModeSimpleProtocol, "42601"},
		{"ROLLBACK; CREATE TABLE evil (id int)", pgx.QueryExecModeSimpleProtocol, "42501"},
	} {
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		_, err := c.Exec(ctx, "SELECT 1/0")
		if pe := pgErr(t, err); pe.Code != "22012" {
			t.Fatalf("1/0: %v", pe)
		}
		_, err = c.Exec(ctx, tc.sql, tc.mode)
		if pe := pgErr(t, err); pe.Code != tc.code {
			t.Fatalf("%s (%v) in an aborted transaction: %s %q, want %s", tc.sql, tc.mode, pe.Code, pe.Message, tc.code)
		}
		if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
	// A ROLLBACK earlier in the same pipeline ends the aborted state: the
	// refusal behind it stands.
	for _, sql := range []string{"BEGIN", "SELECT 1/0"} {
		_, _ = c.Exec(ctx, sql)
	}
	fe := c.PgConn().Frontend()
	send(t, fe, &pgproto3.Parse{Query: "ROLLBACK"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "CREATE TABLE evil (id int)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := answers(t, fe); !slices.Equal(got, []string{"1", "2", "ROLLBACK", "E 42501", "Z I"}) {
		t.Fatalf("ROLLBACK and a refused statement in one pipeline: %q", got)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil || n != 20 {
		t.Fatalf("session unusable after refusals in aborted transactions: %d, %v", n, err)
	}
}

func TestProxyRejections(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	tenantKey := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "other_app"}, nil)
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "mysql_test", "database": "mysql"}, nil)
	wsKey := e.CreateKey(t, "admin", "workspace", "myapp")
	readKey := e.CreateKey(t, "read", "tenant", "wayne")

	tests := []struct {
		name, user, password, db string
		code, message            string
	}{
		{"project key on tenant", e.ProjectID, e.ProxyPassword, "myapp__wayne", "28000",
			"credential is project-scoped; direct-tenant connections require a tenant-scoped or workspace-scoped key"},
		{"workspace key on other workspace", e.ProjectID, wsKey, "other_app_workspace", "28000",
			`credential scoped to workspaces [myapp], attempted workspace "other_app"`},
		{"wrong password", e.ProjectID, "tdb_0000000000000000", "myapp_workspace", "28P01",
			fmt.Sprintf("password authentication failed for user %q", e.ProjectID)},
		{"unknown project", "tdb_00000000", e.ProxyPassword, "myapp_workspace", "28P01",
			`password authentication failed for user "tdb_00000000"`},
		{"other database type", e.ProjectID, e.ProxyPassword, "mysql_test_workspace", "28000",
			`blueprint "mysql_test" is MySQL, not PostgreSQL. Connect via the mysql proxy instead.`},
		// The scope comes first (DESIGN's order): a key that does not reach
		// the workspace learns nothing of its type.
		{"workspace key on other database type", e.ProjectID, wsKey, "mysql_test_workspace", "28000",
			`credential scoped to workspaces [myapp], attempted workspace "mysql_test"`},
		{"unknown database", e.ProjectID, e.ProxyPassword, "nope_workspace", "3D000", `database "nope_workspace" does not exist`},
		{"tenant key on workspace", e.ProjectID, tenantKey, "myapp_workspace", "28000",
			`credential scoped to tenants [wayne], attempted workspace "myapp"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cs := strings.Replace(e.ConnString(tc.password, tc.db, "require"), e.ProjectID, tc.user, 1)
			c, err := pgx.Connect(ctx, cs)
			if err == nil {
				c.Close(ctx)
				t.Fatal("connected")
			}
			pe := pgErr(t, err)
			if pe.Code != tc.code || pe.Message != tc.message {
				t.Fatalf("got %s %q\nwant %s %q", pe.Code, pe.Message, tc.code, tc.message)
			}
		})
	}

	t.Run("workspace key reaches its tenants", func(t *testing.T) {
		c := connect(t, e.ConnString(wsKey, "myapp__wayne", "require"))
		if _, err := c.Exec(context.Background(), "INSERT INTO accounts (name, email) VALUES ('a', 'a@x')"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("read key cannot insert", func(t *testing.T) {
		c := connect(t, e.ConnString(readKey, "myapp__wayne", "require"))
		var user string
		_ = c.QueryRow(context.Background(), "SELECT current_user").Scan(&user)
		if !strings.HasSuffix(user, "_read") {
			t.Fatalf("read key logged in as %s", user)
		}
		_, err := c.Exec(context.Background(), "INSERT INTO accounts (name, email) VALUES ('b', 'b@x')")
		pe := pgErr(t, err)
		if pe.Code != "42501" || pe.Message != "permission denied for table accounts" {
			t.Fatalf("got %s %q", pe.Code, pe.Message)
		}
	})
	t.Run("revoked key refused", func(t *testing.T) {
		var list []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		}
		e.MustDo(t, "GET", "/v1/apikeys", e.ProxyPassword, "", nil, &list)
		for _, k := range list {
			if k.Role == "read" {
				e.MustDo(t, "DELETE", "/v1/apikeys/"+k.ID, e.ProxyPassword, "", nil, nil)
			}
		}
		_, err := pgx.Connect(context.Background(), e.ConnString(readKey, "myapp__wayne", "require"))
		if pe := pgErr(t, err); pe.Code != "28P01" {
			t.Fatalf("revoked key: %v", pe)
		}
	})
}

func TestProxyLargeResultAndCancel(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "require"))
	ctx := context.Background()
	rows, err := c.Query(ctx, "SELECT i, repeat('x', 20) FROM generate_series(1, 1000000) i")
	if err != nil {
		t.Fatal(err)
	}
	var n, sum int64
	for rows.Next() {
		var i int64
		var s string
		if err := rows.Scan(&i, &s); err != nil {
			t.Fatal(err)
		}
		n++
		sum += i
	}
	if rows.Err() != nil || n != 1000000 || sum != 500000500000 {
		t.Fatalf("rows %d sum %d err %v", n, sum, rows.Err())
	}

	// A context deadline makes pgx send a CancelRequest with the proxy's key.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Exec(cctx, "SELECT pg_sleep(30)")
	if err == nil {
		t.Fatal("pg_sleep(30) was not cancelled")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("cancel took %s", time.Since(start))
	}
	// pgx closes a connection whose query was interrupted; a new one works.
	c2 := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	var one int
	if err := c2.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after cancel: %v", err)
	}
	_ = os.Getenv
}

// TestQueryInsideAFailedBatchEndsTheSession: after an error PostgreSQL
// ignores a Query or a FunctionCall until the batch's Sync and never answers
// it, while the proxy's limits and query log would wait for its
// ReadyForQuery; the proxy ends the session there with 08P01 instead of
// leaving the client waiting for an answer that never comes.
func TestQueryInsideAFailedBatchEndsTheSession(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	for name, msg := range map[string]pgproto3.FrontendMessage{
		"query":    &pgproto3.Query{String: "SELECT 1"},
		"function": &pgproto3.FunctionCall{Function: 2026}, // pg_backend_pid()
	} {
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		if err := c.PgConn().Conn().SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
			t.Fatal(err)
		}
		fe := c.PgConn().Frontend()
		send(t, fe, &pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, msg)
		for {
			got, err := fe.Receive()
			if err != nil {
				t.Fatalf("%s: the session ended without saying why: %v", name, err)
			}
			if m, ok := got.(*pgproto3.ErrorResponse); ok && m.Severity == "FATAL" {
				if m.Code != "08P01" || !strings.Contains(m.Message, "send Sync first") {
					t.Fatalf("%s: got %s %s %q", name, m.Severity, m.Code, m.Message)
				}
				break
			}
		}
	}
	// The sessions' connections went back: a new one runs.
	c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
	var one int
	if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the refused sessions: %d, %v", one, err)
	}
}

// TestBackendNamesSayNothingOfTenants checks what a session can read of the
// other databases on its backend server: PostgreSQL shows every session the
// names of all databases and roles there, so those names must not carry a
// project id or a tenant name.
func TestBackendNamesSayNothingOfTenants(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	tenant := fmt.Sprintf("acme%d", time.Now().UnixNano()%1e9)
	e.CreateTenant(t, tenant)
	other := testnode.Start(t) // another project on the same backend server
	c := connect(t, other.ConnString(other.CreateTenant(t, "wayne"), "myapp__wayne", "require"))

	physical := e.Physical(t, fsm.TenantDatabase("myapp", tenant))
	project := strings.TrimPrefix(e.ProjectID, "tdb_")
	ctx := context.Background()
	for _, q := range []string{
		"SELECT datname FROM pg_database",
		"SELECT rolname FROM pg_roles",
		"SELECT coalesce(datname, '') || ' ' || coalesce(usename, '') FROM pg_stat_activity",
	} {
		rows, err := c.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		seen := false
		for _, n := range names {
			if strings.Contains(n, tenant) || strings.Contains(n, project) {
				t.Errorf("%s shows %q, which names tenant %s or project %s", q, n, tenant, e.ProjectID)
			}
			seen = seen || strings.Contains(n, physical)
		}
		if q != "SELECT coalesce(datname, '') || ' ' || coalesce(usename, '') FROM pg_stat_activity" && !seen {
			t.Errorf("%s does not show %s: the check looks at the wrong server", q, physical)
		}
	}
}
