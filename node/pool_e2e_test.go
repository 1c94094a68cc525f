package node_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/internal/testnode"
	"tdb/node"
)

func backendPID(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := c.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestSessionPoolReuseAndReset(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	cs := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable") + "&application_name=app1"

	c1, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	pid := backendPID(t, c1)
	for _, sql := range []string{"SET work_mem = '77MB'", "PREPARE leftover AS SELECT 1", "SELECT pg_advisory_lock(42)", "SELECT setseed(0.42)"} {
		if _, err := c1.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Close returns before the proxy has pooled the session: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(scrape(t, e), `tdb_backend_pool_connections{state="idle"} 1`) {
		if time.Now().After(deadline) {
			t.Fatal("the backend session never went back to the pool")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The same startup parameters get the same backend session back, reset.
	c2 := connect(t, cs)
	if got := backendPID(t, c2); got != pid {
		t.Fatalf("got backend session %d, want the pooled %d", got, pid)
	}
	var workMem, app string
	if err := c2.QueryRow(ctx, "SELECT current_setting('work_mem'), current_setting('application_name')").Scan(&workMem, &app); err != nil {
		t.Fatal(err)
	}
	if workMem == "77MB" || app != "app1" {
		t.Fatalf("reused session: work_mem %s application_name %s", workMem, app)
	}
	if ps := c2.PgConn().ParameterStatus("application_name"); ps != "app1" {
		t.Fatalf("ParameterStatus application_name = %q", ps)
	}
	if _, err := c2.Exec(ctx, "EXECUTE leftover"); err == nil {
		t.Fatal("prepared statement survived")
	}
	var locks int
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").Scan(&locks); err != nil || locks != 0 {
		t.Fatalf("advisory lock survived: %d %v", locks, err)
	}
	// DISCARD ALL keeps random()'s seed: the last client's setseed would
	// tell it the next client's random() values.
	var next, predicted float64
	if err := c2.QueryRow(ctx, "SELECT random()").Scan(&next); err != nil {
		t.Fatal(err)
	}
	direct := connect(t, e.PG.URL())
	if _, err := direct.Exec(ctx, "SELECT setseed(0.42)"); err != nil {
		t.Fatal(err)
	}
	if err := direct.QueryRow(ctx, "SELECT random()").Scan(&predicted); err != nil {
		t.Fatal(err)
	}
	if next == predicted {
		t.Fatalf("the pooled session's random() (%v) follows the last client's seed", next)
	}

	// Other startup parameters never get that session.
	c3 := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")+"&application_name=app2")
	if backendPID(t, c3) == pid {
		t.Fatal("a client with other startup parameters got the pooled session")
	}

	// A client that leaves inside a transaction does not return its session.
	c4, _ := pgx.Connect(ctx, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")+"&application_name=app4")
	pid4 := backendPID(t, c4)
	if _, err := c4.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	c4.Close(ctx)
	admin := connect(t, e.PG.URL())
	waitGone(t, admin, pid4)

	// Nor does a client that sent a cancel: PostgreSQL acts on it when its
	// signal arrives, which may be after the statement it was meant for,
	// so in the pool it could end the next client's statement.
	cs5 := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable") + "&application_name=app5"
	c5 := connect(t, cs5)
	pid5 := backendPID(t, c5)
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c5.Exec(qctx, "SELECT pg_sleep(30)")
	cancel()
	if err == nil {
		t.Fatal("the cancelled statement ran to its end")
	}
	c5.Close(ctx)
	waitGone(t, admin, pid5)
	if backendPID(t, connect(t, cs5)) == pid5 {
		t.Fatal("a session that was sent a cancel went back to the pool")
	}
}

func waitGone(t *testing.T, admin *pgx.Conn, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still alive", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSessionPoolIdleTimeouts(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) {
		c.ServerIdleTimeout = 300 * time.Millisecond
		c.ClientIdleTimeout = 600 * time.Millisecond
	})
	ctx := context.Background()
	admin := connect(t, e.PG.URL())

	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	pid := backendPID(t, c)
	c.Close(ctx)
	waitGone(t, admin, pid) // server_idle_timeout closed the pooled session

	idle := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	time.Sleep(1500 * time.Millisecond)
	if err := idle.Ping(ctx); err == nil {
		t.Fatal("a client silent past client_idle_timeout is still connected")
	}
}

// TestClientIdleTimeoutSparesRunningStatements: client_idle_timeout closes
// clients that are idle, not those waiting for a statement that runs
// longer (the seed: timeouts "tuned for normal application traffic and
// long-running analytical queries"), nor one whose long statement has just
// ended. The simple protocol without TLS, the extended one with.
func TestClientIdleTimeoutSparesRunningStatements(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) {
		c.ClientIdleTimeout = 600 * time.Millisecond
	})
	ctx := context.Background()
	for _, tc := range []struct {
		mode pgx.QueryExecMode
		ssl  string
	}{{pgx.QueryExecModeSimpleProtocol, "disable"}, {pgx.QueryExecModeExec, "require"}} {
		c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", tc.ssl))
		var done string
		if err := c.QueryRow(ctx, "SELECT 'done' FROM pg_sleep(2)", tc.mode).Scan(&done); err != nil {
			t.Fatalf("%v %s: a statement running past client_idle_timeout: %v", tc.mode, tc.ssl, err)
		}
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("%v %s: right after a long statement: %v", tc.mode, tc.ssl, err)
		}
		time.Sleep(1500 * time.Millisecond)
		if err := c.Ping(ctx); err == nil {
			t.Fatalf("%v %s: a client idle past client_idle_timeout is still connected", tc.mode, tc.ssl)
		}
	}
	// A batch left unsynced that ran nothing (a prepare, as asyncpg leaves
	// a pooled connection) is idle too.
	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	fe := c.PgConn().Frontend()
	send(t, fe, &pgproto3.Parse{Name: "p", Query: "SELECT 1"}, &pgproto3.Describe{ObjectType: 'S', Name: "p"}, &pgproto3.Flush{})
	for range 3 { // ParseComplete, ParameterDescription, RowDescription
		if _, err := fe.Receive(); err != nil {
			t.Fatalf("the prepare: %v", err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	send(t, fe, &pgproto3.Sync{})
	if _, err := fe.Receive(); err == nil {
		t.Fatal("a client idle past client_idle_timeout after a prepare is still connected")
	}
	// An Execute and Flush whose statement runs past the timeout is spared,
	// and so is its client right after it ends; once its result is in,
	// the client is idle, though its batch is not synced.
	c = connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	fe = c.PgConn().Frontend()
	execute := func(sql string) {
		t.Helper()
		send(t, fe, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("%s, then Flush: %v", sql, err)
			}
			if _, ok := m.(*pgproto3.CommandComplete); ok {
				return
			}
		}
	}
	execute("SELECT pg_sleep(2)")
	time.Sleep(250 * time.Millisecond) // the client reads its result
	send(t, fe, &pgproto3.Sync{})
	if m, err := fe.Receive(); err != nil {
		t.Fatalf("right after a long statement sent with Execute and Flush: %v", err)
	} else if _, ok := m.(*pgproto3.ReadyForQuery); !ok {
		t.Fatalf("Sync after a long statement: %T, want ReadyForQuery", m)
	}
	execute("SELECT 1")
	time.Sleep(1500 * time.Millisecond)
	send(t, fe, &pgproto3.Sync{})
	if _, err := fe.Receive(); err == nil {
		t.Fatal("a client idle past client_idle_timeout after an Execute and Flush is still connected")
	}
	// So is one whose unsynced batch failed: the backend skips the rest of
	// it, an Execute sent behind the error included, until the Sync.
	c = connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	fe = c.PgConn().Frontend()
	send(t, fe, &pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("a failing Execute, then Flush: %v", err)
		}
		if _, ok := m.(*pgproto3.ErrorResponse); ok {
			break
		}
	}
	time.Sleep(1500 * time.Millisecond)
	send(t, fe, &pgproto3.Sync{})
	if _, err := fe.Receive(); err == nil {
		t.Fatal("a client idle past client_idle_timeout after a failed Execute and Flush is still connected")
	}
}

// TestPooledSeedIsNotShown: a pooled session's new random() seed must not
// be readable by the sessions of the same role, which see each other's
// statements in pg_stat_activity: with it, the last client (or any client
// of the role) would know the next client's random() values.
func TestPooledSeedIsNotShown(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	cs := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable") + "&application_name=seed1"
	c1, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	pid := backendPID(t, c1)
	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(scrape(t, e), `tdb_backend_pool_connections{state="idle"} 1`) {
		if time.Now().After(deadline) {
			t.Fatal("the backend session never went back to the pool")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Another client of the same key and role (other startup parameters, so
	// another backend session) reads what the pooled session ran last.
	watcher := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")+"&application_name=seed2")
	var last string
	if err := watcher.QueryRow(ctx, "SELECT query FROM pg_stat_activity WHERE pid = $1", pid).Scan(&last); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`setseed\(([-+0-9.eE]+)\)`).FindStringSubmatch(last)
	if m == nil {
		return // nothing to predict from
	}
	direct := connect(t, e.PG.URL())
	var predicted float64
	if err := direct.QueryRow(ctx, "SELECT setseed("+m[1]+"), random()").Scan(nil, &predicted); err != nil {
		t.Fatal(err)
	}
	c2 := connect(t, cs)
	if got := backendPID(t, c2); got != pid {
		t.Fatalf("got backend session %d, want the pooled %d", got, pid)
	}
	var next float64
	if err := c2.QueryRow(ctx, "SELECT random()").Scan(&next); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("pg_stat_activity shows the pooled session's seed (%q): the next client's random() is %v, predicted %v", last, next, predicted)
}

// TestSessionPoolForgetsDeletedTenants: the pooled backend sessions of a
// deleted tenant are closed when it is deleted, not at server_idle_timeout:
// a node whose tenants come and go would otherwise hold a socket for each
// session each of them left.
func TestSessionPoolForgetsDeletedTenants(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	idle := func(n string) bool {
		return strings.Contains(scrape(t, e), `tdb_backend_pool_connections{state="idle"} `+n+"\n")
	}
	key := e.CreateTenant(t, "brief")
	for range 3 {
		c := connect(t, e.ConnString(key, "myapp__brief", "disable"))
		mustSelectOne(t, c)
		c.Close(ctx)
		waitFor(t, "the tenant's backend session to be pooled", func() bool { return idle("1") })
	}
	e.MustDo(t, "DELETE", "/v1/tenants/brief", e.ProxyPassword, "", nil, nil)
	waitFor(t, "the deleted tenant's pooled session to be closed", func() bool { return idle("0") })
}
