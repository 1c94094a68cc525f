package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/querylog"
)

// setWorkspace changes myapp's settings through the API.
func setWorkspace(t *testing.T, e *testnode.Env, settings map[string]int64) {
	t.Helper()
	e.MustDo(t, "PATCH", "/v1/workspaces/myapp/settings", e.ProxyPassword, "", settings, nil)
}

// setCluster changes the cluster settings with the operator's key.
func setCluster(t *testing.T, e *testnode.Env, settings map[string]int64) {
	t.Helper()
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", settings, nil)
}

// wantPgError checks an error's severity, SQLSTATE and exact text.
func wantPgError(t *testing.T, err error, severity, code, msg string) {
	t.Helper()
	pe := pgErr(t, err)
	if pe.Severity != severity || pe.Code != code || pe.Message != msg {
		t.Fatalf("got %s %s %q, want %s %s %q", pe.Severity, pe.Code, pe.Message, severity, code, msg)
	}
}

func mustSelectOne(t *testing.T, c *pgx.Conn) {
	t.Helper()
	var one int
	if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session not usable: %v", err)
	}
}

func TestPolicyMaxRowsPerQuery(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	ctx := context.Background()
	c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
	// Without a limit every row comes back; a session that read the
	// settings then sees the new limit from its next statement.
	var ten int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM (SELECT generate_series(1, 10)) g").Scan(&ten); err != nil || ten != 10 {
		t.Fatalf("before the limit: %d, %v", ten, err)
	}
	setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
	const overText = "query returned more than max_rows_per_query (5) rows"

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			// At the limit: all rows.
			rows, _ := c.Query(ctx, "SELECT g FROM generate_series(1, 5) g", mode)
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil || n != 5 {
				t.Fatalf("5 rows at the limit: got %d, %v", n, err)
			}
			// Past it: at most 5 rows, then the error; never a silent
			// truncation. A huge result ends only because the backend
			// statement was cancelled.
			rows, _ = c.Query(ctx, "SELECT generate_series(1, 200000000)", mode)
			n = 0
			for rows.Next() {
				n++
			}
			wantPgError(t, rows.Err(), "ERROR", "54000", overText)
			if n > 5 {
				t.Fatalf("%d rows reached the client past the limit", n)
			}
			mustSelectOne(t, c)
			// Inside a transaction the error aborts it, as a backend error would.
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, "SELECT g FROM generate_series(1, 100) g", mode)
			wantPgError(t, err, "ERROR", "54000", overText)
			_ = tx.Rollback(ctx)
			mustSelectOne(t, c)
		})
	}

	// In a pipelined batch (one implicit transaction) the statements after
	// the one past the limit do not run: the cancel aborts the batch.
	accountsTable(t, e, "wayne")
	b := &pgx.Batch{}
	b.Queue("SELECT generate_series(1, 100000000)")
	b.Queue("INSERT INTO accounts (name, email) VALUES ('x', 'x@x')")
	wantPgError(t, c.SendBatch(ctx, b).Close(), "ERROR", "54000", overText)
	var inserted int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&inserted); err != nil || inserted != 0 {
		t.Fatalf("after the aborted batch: %d rows inserted, %v", inserted, err)
	}

	// A portal fetched in batches (JDBC fetch size): rows add up across
	// PortalSuspended.
	pc := c.PgConn()
	fe := pc.Frontend()
	send := func(msgs ...pgproto3.FrontendMessage) {
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// receive reads to ReadyForQuery: rows, whether the portal suspended, the error.
	receive := func() (rows int, suspended bool, perr *pgproto3.ErrorResponse) {
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := msg.(type) {
			case *pgproto3.DataRow:
				rows++
			case *pgproto3.PortalSuspended:
				suspended = true
			case *pgproto3.ErrorResponse:
				cp := *m
				perr = &cp
			case *pgproto3.ReadyForQuery:
				return
			}
		}
	}
	send(&pgproto3.Query{String: "BEGIN"})
	receive()
	send(&pgproto3.Parse{Query: "SELECT g FROM generate_series(1, 100) g"}, &pgproto3.Bind{},
		&pgproto3.Execute{MaxRows: 3}, &pgproto3.Sync{})
	if n, susp, perr := receive(); n != 3 || !susp || perr != nil {
		t.Fatalf("first fetch: %d rows, suspended %v, error %v", n, susp, perr)
	}
	send(&pgproto3.Execute{MaxRows: 3}, &pgproto3.Sync{})
	n, _, perr := receive()
	if perr == nil || perr.Code != "54000" || perr.Message != overText || n != 2 {
		t.Fatalf("second fetch: %d rows, error %+v; want 2 rows then 54000", n, perr)
	}
	send(&pgproto3.Query{String: "ROLLBACK"})
	receive()
	mustSelectOne(t, c)

	// A new value applies to the next statement, without reconnecting.
	setWorkspace(t, e, map[string]int64{"max_rows_per_query": 0})
	rows, _ := c.Query(ctx, "SELECT g FROM generate_series(1, 100) g")
	got := 0
	for rows.Next() {
		got++
	}
	if rows.Err() != nil || got != 100 {
		t.Fatalf("limit off: %d rows, %v", got, rows.Err())
	}
}

func TestPolicyQueryTimeout(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	ctx := context.Background()
	c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))

	setWorkspace(t, e, map[string]int64{"query_timeout_ms": 300})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		for range 20 { // the session's one timer moves from statement to statement
			mustSelectOne(t, c)
		}
		_, err := c.Exec(ctx, "SELECT pg_sleep(30)", mode)
		wantPgError(t, err, "ERROR", "57014", "canceling statement due to query_timeout_ms (300 ms)")
		mustSelectOne(t, c)
	}
	// Off again: the same session runs a statement longer than 300 ms.
	setWorkspace(t, e, map[string]int64{"query_timeout_ms": 0})
	if _, err := c.Exec(ctx, "SELECT pg_sleep(0.5)"); err != nil {
		t.Fatalf("timeout off: %v", err)
	}
	// The client's own cancel keeps PostgreSQL's text.
	setWorkspace(t, e, map[string]int64{"query_timeout_ms": 60000})
	go func() {
		time.Sleep(200 * time.Millisecond)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = c.PgConn().CancelRequest(cctx)
	}()
	_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
	wantPgError(t, err, "ERROR", "57014", "canceling statement due to user request")
	mustSelectOne(t, c)
}

func TestPolicyMaxConnections(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	ctx := context.Background()
	setWorkspace(t, e, map[string]int64{"max_connections": 2})
	url := e.ConnString(key, "myapp__wayne", "disable")
	c1 := connect(t, url)
	c2 := connect(t, url)
	_, err := pgx.Connect(ctx, url)
	wantPgError(t, err, "FATAL", "53300", `too many connections for database "myapp__wayne" (max_connections 2)`)
	// The workspace database counts on its own.
	connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	// A slot frees when a client leaves.
	c1.Close(ctx)
	waitFor(t, "the slot to free", func() bool {
		c3, err := pgx.Connect(ctx, url)
		if err != nil {
			return false
		}
		c3.Close(ctx)
		return true
	})
	mustSelectOne(t, c2)
}

func TestPolicyPerIPLimit(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	setCluster(t, e, map[string]int64{"max_conns_per_ip": 2})
	url := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")
	connect(t, url)
	connect(t, url)
	_, err := pgx.Connect(ctx, url)
	wantPgError(t, err, "FATAL", "53300", "connection rejected: too many connections from your IP (max_conns_per_ip 2)")
}

var banText = regexp.MustCompile(`^connection rejected: your IP is temporarily rate-limited after repeated failed auth attempts, retry in (\d+)s$`)

// banSeconds connects and returns the seconds of the ban rejection.
func banSeconds(t *testing.T, url string) int {
	t.Helper()
	_, err := pgx.Connect(context.Background(), url)
	pe := pgErr(t, err)
	m := banText.FindStringSubmatch(pe.Message)
	if pe.Severity != "FATAL" || pe.Code != "53300" || m == nil {
		t.Fatalf("got %s %s %q, want the FATAL 53300 ban", pe.Severity, pe.Code, pe.Message)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitBanned(t *testing.T, e *testnode.Env, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := e.Node.FSM().WaitFor(ctx, func(s *fsm.State) bool { _, ok := s.BannedUntil(ip, time.Now()); return ok })
	if err != nil {
		t.Fatalf("%s never banned: %v", ip, err)
	}
}

func TestPolicyAuthBan(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	setCluster(t, e, map[string]int64{"auth_fail_threshold": 3})
	good := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")
	bad := e.ConnString("tdb_0000000000000000", "controlplane_workspace", "disable")

	// Clients that hang up during authentication (psql asking for a
	// password) are not failures.
	for i := 0; i < 5; i++ {
		hangUpDuringAuth(t, e)
	}
	for i := 0; i < 2; i++ {
		_, err := pgx.Connect(ctx, bad)
		wantPgError(t, err, "FATAL", "28P01", fmt.Sprintf("password authentication failed for user %q", e.ProjectID))
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := e.Node.FSM().WaitFor(ctx2, func(s *fsm.State) bool {
		r, ok := s.Bans.Lookup("127.0.0.1")
		return ok && r.Failures == 2
	}); err != nil {
		t.Fatalf("two failures not recorded: %v", err)
	}
	var rec fsm.AuthRecord
	e.Node.FSM().View(func(s *fsm.State) { rec, _ = s.Bans.Lookup("127.0.0.1") })
	if rec.Failures != 2 || rec.Offenses != 0 {
		t.Fatalf("record %+v: hang-ups counted?", rec)
	}
	mustSelectOne(t, connect(t, good))

	// The third failure within the window bans the IP: even the right
	// password is refused before authentication, with a countdown.
	_, _ = pgx.Connect(ctx, bad)
	waitBanned(t, e, "127.0.0.1")
	first := banSeconds(t, good)
	time.Sleep(1100 * time.Millisecond)
	second := banSeconds(t, good)
	t.Logf("retry in %ds, then %ds", first, second)
	if first < 1 || first > 60 || second < 1 || second > first {
		t.Fatalf("countdown %d then %d: want 1..60, not increasing", first, second)
	}
	// Bans show in the metrics of every node (here: this one).
	if !strings.Contains(scrape(t, e), "tdb_bans_active 1") {
		t.Fatalf("metrics do not show the ban")
	}
}

func TestQueryLog(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	wayne := e.CreateTenant(t, "wayne")
	globex := e.CreateTenant(t, "globex")
	accountsTable(t, e, "wayne")
	c := connect(t, e.ConnString(wayne, "myapp__wayne", "disable"))
	if _, err := c.Exec(ctx, "INSERT INTO accounts (name, email) VALUES ($1, $2), ($3, $4)", "a", "a@x", "b", "b@x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT * FROM accounts; SELECT nope", pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Fatal("bad column accepted")
	}
	long := "SELECT '" + strings.Repeat("x", 5000) + "' AS long"
	if _, err := c.Exec(ctx, long, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	g := connect(t, e.ConnString(globex, "myapp__globex", "disable"))
	mustSelectOne(t, g)

	var out struct {
		Entries []querylog.Entry `json:"entries"`
	}
	e.MustDo(t, "GET", "/v1/logs?since=1h", wayne, "", nil, &out)
	var insert, selectAll, bad, longEntry *querylog.Entry
	for i := range out.Entries {
		en := &out.Entries[i]
		if en.Database != "myapp__wayne" {
			t.Fatalf("wayne's key sees %s's entry %+v", en.Database, en)
		}
		switch {
		case strings.HasPrefix(en.Statement, "INSERT INTO accounts"):
			insert = en
		case en.Statement == "SELECT * FROM accounts":
			selectAll = en
		case en.Statement == "SELECT nope":
			bad = en
		case strings.HasPrefix(en.Statement, "SELECT 'xxx"):
			longEntry = en
		}
	}
	if insert == nil || selectAll == nil || bad == nil || longEntry == nil {
		t.Fatalf("missing entries in %+v", out.Entries)
	}
	if insert.Rows != 2 || insert.SQLState != "00000" || insert.Role != "admin" || insert.KeyID == "" ||
		insert.ClientIP != "127.0.0.1" || insert.Node != "n1" || insert.Project != e.ProjectID || insert.Tenant != "wayne" ||
		insert.Time.IsZero() || insert.DurationMs <= 0 {
		t.Fatalf("insert entry %+v", insert)
	}
	if selectAll.Rows != 2 || bad.SQLState != "42703" {
		t.Fatalf("select entry %+v, failed entry %+v", selectAll, bad)
	}
	if len(longEntry.Statement) != querylog.MaxStatement || !longEntry.Truncated {
		t.Fatalf("long statement kept %d bytes (truncated %v)", len(longEntry.Statement), longEntry.Truncated)
	}

	// The project key filters by tenant; a tenant key cannot ask for another.
	e.MustDo(t, "GET", "/v1/logs?tenant=globex", e.ProxyPassword, "", nil, &out)
	if len(out.Entries) == 0 {
		t.Fatal("no entries for globex")
	}
	for _, en := range out.Entries {
		if en.Tenant != "globex" {
			t.Fatalf("tenant filter let through %+v", en)
		}
	}
	if status := e.Do(t, "GET", "/v1/logs?tenant=globex", wayne, "", nil, nil); status != http.StatusForbidden {
		t.Fatalf("wayne asking for globex's log: status %d", status)
	}
	if status := e.Do(t, "GET", "/v1/logs?since=yesterday", wayne, "", nil, nil); status != http.StatusBadRequest {
		t.Fatalf("bad since: status %d", status)
	}
}

// scrape reads the node's /metrics.
func scrape(t *testing.T, e *testnode.Env) string {
	t.Helper()
	resp, err := http.Get("http://" + e.Node.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	mustSelectOne(t, c)
	_, _ = c.Exec(ctx, "SELECT nope")
	text := scrape(t, e)
	for _, want := range []string{
		`tdb_connections{state="active"} 1`,
		`tdb_statements_total{sqlstate="00000"}`,
		`tdb_statement_errors_total{sqlstate="42703"} 1`,
		`tdb_raft_state{state="leader"} 1`,
		`tdb_raft_apply_seconds_count`,
		`tdb_relay_bytes_total{direction="backend_to_client"}`,
		`tdb_relay_bytes_total{direction="client_to_backend"}`,
		`tdb_backend_pool_connections{state="idle"} 0`,
		`tdb_backend_pool_connections{state="active"} 1`,
		`tdb_bans_active 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, `tdb_relay_bytes_total{direction="backend_to_client"}`) && strings.HasSuffix(line, " 0") {
			t.Errorf("no bytes relayed: %s", line)
		}
	}
}

// hangUpDuringAuth starts a login and closes the connection when asked for
// the password.
func hangUpDuringAuth(t *testing.T, e *testnode.Env) {
	t.Helper()
	conn, err := net.Dial("tcp", e.Node.BoundWireAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": e.ProjectID, "database": "controlplane_workspace"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := fe.Receive()
	if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok || err != nil {
		t.Fatalf("want AuthenticationSASL, got %T %v", msg, err)
	}
}

// TestPolicyFunctionCall: a FunctionCall message is a statement of its own
// to the limits, even pipelined in front of a Query: the Query after it
// keeps its own timeout and row limit.
func TestPolicyFunctionCall(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
	setWorkspace(t, e, map[string]int64{"query_timeout_ms": 300, "max_rows_per_query": 5})
	fe := c.PgConn().Frontend()
	const pgSleep = 2626 // pg_catalog.pg_sleep(float8)
	sleep := func(secs string) *pgproto3.FunctionCall {
		return &pgproto3.FunctionCall{Function: pgSleep, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte(secs)}}
	}
	// exchange sends msgs in one write and reads an answer per message: each
	// one's error (nil when it succeeded).
	exchange := func(msgs ...pgproto3.FrontendMessage) []*pgproto3.ErrorResponse {
		t.Helper()
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var out []*pgproto3.ErrorResponse
		var cur *pgproto3.ErrorResponse
		for len(out) < len(msgs) {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := msg.(type) {
			case *pgproto3.ErrorResponse:
				cp := *m
				cur = &cp
			case *pgproto3.ReadyForQuery:
				out = append(out, cur)
				cur = nil
			}
		}
		return out
	}
	wantCode := func(what string, got *pgproto3.ErrorResponse, code, text string) {
		t.Helper()
		switch {
		case code == "" && got != nil:
			t.Fatalf("%s: %s %s", what, got.Code, got.Message)
		case code != "" && (got == nil || got.Code != code || got.Message != text):
			t.Fatalf("%s: got %+v, want %s %q", what, got, code, text)
		}
	}
	const timeout = "canceling statement due to query_timeout_ms (300 ms)"
	errs := exchange(sleep("0"), &pgproto3.Query{String: "SELECT pg_sleep(5)"})
	wantCode("function call", errs[0], "", "")
	wantCode("the Query after it", errs[1], "57014", timeout)
	errs = exchange(sleep("0"), &pgproto3.Query{String: "SELECT generate_series(1, 100)"})
	wantCode("the Query after it", errs[1], "54000", "query returned more than max_rows_per_query (5) rows")
	errs = exchange(sleep("5"))
	wantCode("a function call past the timeout", errs[0], "57014", timeout)
	mustSelectOne(t, c)

	var logged struct {
		Entries []querylog.Entry `json:"entries"`
	}
	e.MustDo(t, "GET", "/v1/logs?tenant=wayne", e.ProxyPassword, "", nil, &logged)
	found := false
	for _, l := range logged.Entries {
		found = found || l.Statement == "function call (oid 2626)" && l.SQLState == "57014"
	}
	if !found {
		t.Fatalf("the function call past the timeout is not in the query log: %+v", logged)
	}
}
