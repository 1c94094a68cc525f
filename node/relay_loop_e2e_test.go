package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/internal/testnode"
	"tdb/node"
)

// mustCancelSleep runs pg_sleep(30) on c and cancels it with a protocol
// CancelRequest after 300 ms: the statement must fail with 57014.
func mustCancelSleep(t *testing.T, c *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = c.PgConn().CancelRequest(ctx)
	}()
	_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancelled statement: %v, want SQLSTATE 57014", err)
	}
}

// relayCount reads tdb_relay_sessions_total{relay=...} from /metrics.
func relayCount(t *testing.T, e *testnode.Env, relay string) int {
	t.Helper()
	return counter(t, e, "tdb_relay_sessions_total", "relay", relay)
}

// tlsCount reads tdb_tls_sessions_total{records=...} from /metrics.
func tlsCount(t *testing.T, e *testnode.Env, records string) int {
	t.Helper()
	return counter(t, e, "tdb_tls_sessions_total", "records", records)
}

// counter reads a counter with one label from /metrics; 0 when absent.
func counter(t *testing.T, e *testnode.Env, name, label, value string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\{` + label + `="` + value + `"\} (\d+)$`).FindStringSubmatch(scrape(t, e))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestEventLoopRelay runs plain TCP and TLS sessions through the event loop:
// results larger than the socket buffers, a message larger than the loop's
// buffer (the session moves to the goroutine relay and goes on), and a
// backend session that comes back clean to the pool.
func TestEventLoopRelay(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	url := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")
	c := connect(t, url)

	var rows, chars int64
	if err := c.QueryRow(ctx, "SELECT count(*), sum(length(s)) FROM (SELECT repeat('x', 10) AS s FROM generate_series(1, 10)) q").Scan(&rows, &chars); err != nil {
		t.Fatal(err)
	}
	// A 40 MB result crosses the loop in many reads and blocked writes.
	r, err := c.Query(ctx, "SELECT i, repeat('y', 200) FROM generate_series(1, 200000) i", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	rows, chars = 0, 0
	for r.Next() {
		var i int64
		var s string
		if err := r.Scan(&i, &s); err != nil {
			t.Fatal(err)
		}
		rows++
		chars += int64(len(s))
		if i != rows {
			t.Fatalf("row %d came as %d", rows, i)
		}
	}
	if r.Err() != nil || rows != 200000 || chars != 200000*200 {
		t.Fatalf("streamed %d rows, %d chars: %v", rows, chars, r.Err())
	}
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if got := relayCount(t, e, "loop"); got != 1 {
		t.Fatalf("sessions relayed by the loop: %d, want 1", got)
	}
	if got := relayCount(t, e, "handoff"); got != 0 {
		t.Fatalf("handoffs before any large message: %d", got)
	}

	// A 200 kB statement does not fit the loop's buffer: the session moves
	// to goroutines at that message, and everything still arrives. Once
	// its answer is through, the session goes back to the loop.
	big := strings.Repeat("z", 200<<10)
	var n int
	if err := c.QueryRow(ctx, "SELECT length('"+big+"')", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != len(big) {
		t.Fatalf("large statement: %d, %v", n, err)
	}
	waitFor(t, "the session to go back to the loop", func() bool { return relayCount(t, e, "return") == 1 })
	mustSelectOne(t, c)
	if err := c.QueryRow(ctx, "SELECT length($1::text)", big).Scan(&n); err != nil || n != len(big) {
		t.Fatalf("large parameter: %d, %v", n, err)
	}
	// A large row on the way back, and the session's state (a
	// transaction, a prepared statement) carried both ways.
	var got string
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(ctx, "kept", "SELECT $1::int + 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT repeat('r', 300000)").Scan(&got); err != nil || len(got) != 300000 {
		t.Fatalf("large row: %d, %v", len(got), err)
	}
	waitFor(t, "the session to go back to the loop again", func() bool { return relayCount(t, e, "return") >= 3 })
	if err := c.QueryRow(ctx, "kept", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("prepared statement after the round trips: %d, %v", n, err)
	}
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if got, back := relayCount(t, e, "handoff"), relayCount(t, e, "return"); got != 3 || back != 3 {
		t.Fatalf("handoffs %d and returns %d, want 3 of each", got, back)
	}
	mustSelectOne(t, c)
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The backend session went back to the pool clean, and serves the next
	// client from the loop again.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(scrape(t, e), `tdb_backend_pool_connections{state="idle"} 1`); {
		if time.Now().After(deadline) {
			t.Fatal("the backend session did not go back to the pool")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c2 := connect(t, url)
	var pid2 int
	var inTx string
	if err := c2.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('transaction_isolation')").Scan(&pid2, &inTx); err != nil {
		t.Fatal(err)
	}
	if pid2 != pid {
		t.Fatalf("the next client got backend %d, not the pooled %d", pid2, pid)
	}
	if got := relayCount(t, e, "loop"); got != 2 {
		t.Fatalf("sessions relayed by the loop: %d, want 2", got)
	}

	// TLS clients are relayed by the loop too, large results and all.
	tc := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "require"))
	if err := tc.QueryRow(ctx, "SELECT count(*), sum(length(s)) FROM (SELECT repeat('t', 300) AS s FROM generate_series(1, 100000)) q").Scan(&rows, &chars); err != nil || rows != 100000 || chars != 300*100000 {
		t.Fatalf("TLS: %d rows, %d chars, %v", rows, chars, err)
	}
	r, err = tc.Query(ctx, "SELECT repeat('t', 300) FROM generate_series(1, 100000)")
	if err != nil {
		t.Fatal(err)
	}
	rows = 0
	for r.Next() {
		rows++
	}
	if r.Err() != nil || rows != 100000 {
		t.Fatalf("TLS stream: %d rows, %v", rows, r.Err())
	}
	if got := relayCount(t, e, "loop"); got != 3 {
		t.Fatalf("sessions relayed by the loop: %d, want 3", got)
	}
	if got := relayCount(t, e, "goroutine"); got != 0 {
		t.Fatalf("sessions relayed by goroutines: %d, want 0", got)
	}
	// That session went on with tdb's own TLS records; a large statement
	// moves it to goroutines as for plain TCP.
	if got := tlsCount(t, e, "tls13"); got != 1 {
		t.Fatalf("TLS sessions on tdb's own records: %d, want 1", got)
	}
	if err := tc.QueryRow(ctx, "SELECT length('"+big+"')", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != len(big) {
		t.Fatalf("TLS large statement: %d, %v", n, err)
	}
	mustSelectOne(t, tc)
	if got := relayCount(t, e, "handoff"); got != 4 {
		t.Fatalf("handoffs: %d, want 4", got)
	}

	// A TLS 1.2 client stays with crypto/tls, in the loop too.
	cfg, err := pgx.ParseConfig(e.ConnString(e.ProxyPassword, "controlplane_workspace", "require"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig.MaxVersion = tls.VersionTLS12
	cfg.Fallbacks = nil
	c12, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c12.Close(ctx)
	if err := c12.QueryRow(ctx, "SELECT count(*), sum(length(s)) FROM (SELECT repeat('u', 300) AS s FROM generate_series(1, 100000)) q").Scan(&rows, &chars); err != nil || rows != 100000 || chars != 300*100000 {
		t.Fatalf("TLS 1.2: %d rows, %d chars, %v", rows, chars, err)
	}
	if got := tlsCount(t, e, "crypto_tls"); got != 1 {
		t.Fatalf("TLS sessions on crypto/tls: %d, want 1", got)
	}
	if got := relayCount(t, e, "loop"); got != 4 {
		t.Fatalf("sessions relayed by the loop: %d, want 4", got)
	}
	// It leaves the loop at a large row and comes back, twice.
	for range 2 {
		want := relayCount(t, e, "return") + 1
		var s string
		if err := c12.QueryRow(ctx, "SELECT repeat('v', 100000)").Scan(&s); err != nil || len(s) != 100000 {
			t.Fatalf("TLS 1.2 large row: %d, %v", len(s), err)
		}
		waitFor(t, "the TLS 1.2 session to go back to the loop", func() bool { return relayCount(t, e, "return") >= want })
		mustSelectOne(t, c12)
	}
}

// TestGoroutineRelayOption turns the event loop off.
func TestGoroutineRelayOption(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) { c.GoroutineRelay = true })
	mustSelectOne(t, connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")))
	if loop, gr := relayCount(t, e, "loop"), relayCount(t, e, "goroutine"); loop != 0 || gr != 1 {
		t.Fatalf("loop %d, goroutine %d sessions; want 0 and 1", loop, gr)
	}
}

// TestUnixSocketBackend: a backend registered by its Unix socket (what tdb
// dev does with its own PostgreSQL) serves sessions through the loop, large
// results and protocol cancels included (the cancel is dialled to the
// socket too).
func TestUnixSocketBackend(t *testing.T) {
	t.Parallel()
	e := testnode.StartUnix(t)
	ctx := context.Background()
	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))

	var overSocket bool
	if err := c.QueryRow(ctx, "SELECT client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&overSocket); err != nil {
		t.Fatal(err)
	}
	if !overSocket {
		t.Fatal("the backend session came over TCP, not the Unix socket")
	}
	var rows, chars int64
	if err := c.QueryRow(ctx, "SELECT count(*), sum(length(s)) FROM (SELECT repeat('u', 200) AS s FROM generate_series(1, 50000)) q").Scan(&rows, &chars); err != nil || rows != 50000 || chars != 200*50000 {
		t.Fatalf("aggregate: %d rows, %d chars, %v", rows, chars, err)
	}
	r, err := c.Query(ctx, "SELECT repeat('u', 200) FROM generate_series(1, 50000)", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	rows = 0
	for r.Next() {
		rows++
	}
	if r.Err() != nil || rows != 50000 {
		t.Fatalf("stream: %d rows, %v", rows, r.Err())
	}

	mustCancelSleep(t, c)
	mustSelectOne(t, c)
	if got := relayCount(t, e, "loop"); got != 1 {
		t.Fatalf("sessions relayed by the loop: %d, want 1", got)
	}
}

// TestRelayLoops: with three loops, sessions that run at once (streams,
// prepared statements, a cancel) are relayed by all three (the first loop
// takes one session before the others take theirs), each session whole; a
// count out of range is refused at start.
func TestRelayLoops(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) { c.RelayLoops, c.RelayNice, c.RelayLoopFill = 3, 3, 1 })
	if got := threadsAtNice(t, 3); got != 3 {
		t.Fatalf("threads at --relay-nice 3: %d, want the 3 loops' own", got)
	}
	ctx := context.Background()
	url := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")
	const sessions = 6
	conns := make([]*pgx.Conn, sessions)
	for i := range conns {
		conns[i] = connect(t, url)
	}
	errs := make(chan error, sessions)
	for i, c := range conns {
		go func() {
			for round := range 5 {
				var n, sum int64
				if err := c.QueryRow(ctx, "SELECT count(*), sum(i) FROM generate_series(1, $1::int) i", 20000+i).Scan(&n, &sum); err != nil {
					errs <- err
					return
				}
				if want := int64(20000 + i); n != want || sum != want*(want+1)/2 {
					errs <- errors.New("session " + strconv.Itoa(i) + " round " + strconv.Itoa(round) + ": wrong aggregate")
					return
				}
				r, err := c.Query(ctx, "SELECT repeat('z', 300) FROM generate_series(1, 20000)", pgx.QueryExecModeSimpleProtocol)
				if err != nil {
					errs <- err
					return
				}
				rows := 0
				for r.Next() {
					rows++
				}
				if r.Err() != nil || rows != 20000 {
					errs <- errors.New("session " + strconv.Itoa(i) + ": stream of " + strconv.Itoa(rows) + " rows")
					return
				}
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mustCancelSleep(t, conns[sessions-1])
	for _, c := range conns {
		mustSelectOne(t, c)
	}
	if got := relayCount(t, e, "loop"); got != sessions {
		t.Fatalf("sessions relayed by the loops: %d, want %d", got, sessions)
	}

	_, err := node.Start(ctx, node.Config{NodeID: "n", DataDir: t.TempDir(), RelayLoops: node.MaxRelayLoops + 1})
	if err == nil || !strings.Contains(err.Error(), "--relay-loops must be from 0 (one loop per 4 Go threads) to 64, not 65") {
		t.Fatalf("start with %d loops: %v", node.MaxRelayLoops+1, err)
	}
	_, err = node.Start(ctx, node.Config{NodeID: "n", DataDir: t.TempDir(), RelayNice: 20})
	if err == nil || !strings.Contains(err.Error(), "--relay-nice must be from -20 to 19, not 20") {
		t.Fatalf("start with --relay-nice 20: %v", err)
	}
}

// threadsAtNice counts this process's threads running at niceness nice.
func threadsAtNice(t *testing.T, nice int) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) > 16 && f[16] == strconv.Itoa(nice) { // field 19 of stat(5)
			n++
		}
	}
	return n
}

// TestDefaultRelayLoops: without --relay-loops a node runs one loop per four
// Go threads, at least two (one on a single thread) and at most
// MaxRelayLoops.
func TestDefaultRelayLoops(t *testing.T) {
	for procs, want := range map[int]int{1: 1, 2: 2, 7: 2, 8: 2, 12: 3, 16: 4, 33: 8, 1000: node.MaxRelayLoops} {
		if got := node.DefaultRelayLoops(procs); got != want {
			t.Errorf("DefaultRelayLoops(%d) = %d, want %d", procs, got, want)
		}
	}
}

// TestSessionsGoBackAndForth: sessions that keep leaving the loop (large
// statements, large rows, a protocol cancel) and coming back, plain and
// TLS, pipelined and not, lose and reorder nothing.
func TestSessionsGoBackAndForth(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	const clients, rounds = 6, 40
	errs := make(chan error, clients)
	for i := range clients {
		mode := []string{"disable", "require"}[i%2]
		c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", mode))
		go func() {
			errs <- func() error {
				for r := range rounds {
					size := 60<<10 + (i*rounds+r)%5*20<<10 // around the loop's 64 KiB
					text := strings.Repeat(string(rune('a'+i)), size)
					var n int
					var s string
					switch r % 5 {
					case 0: // a large statement
						if err := c.QueryRow(ctx, "SELECT length('"+text+"')", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != size {
							return errors.Join(errors.New("large statement"), err)
						}
					case 1: // a large row
						if err := c.QueryRow(ctx, "SELECT repeat($1, $2)", string(rune('a'+i)), size).Scan(&s); err != nil || s != text {
							return errors.Join(errors.New("large row"), err)
						}
					case 2: // a pipeline mixing both with small ones
						b := &pgx.Batch{}
						b.Queue("SELECT $1::int", r)
						b.Queue("SELECT length($1::text)", text)
						b.Queue("SELECT repeat('q', $1)", size)
						b.Queue("SELECT $1::int + 1", r)
						br := c.SendBatch(ctx, b)
						var a, d int
						if err := br.QueryRow().Scan(&a); err != nil || a != r {
							return errors.Join(errors.New("batch 1"), err)
						}
						if err := br.QueryRow().Scan(&n); err != nil || n != size {
							return errors.Join(errors.New("batch 2"), err)
						}
						if err := br.QueryRow().Scan(&s); err != nil || len(s) != size {
							return errors.Join(errors.New("batch 3"), err)
						}
						if err := br.QueryRow().Scan(&d); err != nil || d != r+1 {
							return errors.Join(errors.New("batch 4"), err)
						}
						if err := br.Close(); err != nil {
							return err
						}
					case 3: // a cancel (sent again until it lands: one that
						// comes before the statement is lost, as with PostgreSQL)
						done, stopped := make(chan struct{}), make(chan struct{})
						go func() {
							defer close(stopped)
							for {
								select {
								case <-done:
									return
								case <-time.After(50 * time.Millisecond):
									_ = c.PgConn().CancelRequest(ctx)
								}
							}
						}()
						_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
						close(done)
						<-stopped
						time.Sleep(20 * time.Millisecond) // the last cancel is through
						var pe *pgconn.PgError
						if !errors.As(err, &pe) || pe.Code != "57014" {
							return errors.Join(errors.New("cancel"), err)
						}
					default:
						if err := c.QueryRow(ctx, "SELECT $1::int", r).Scan(&n); err != nil || n != r {
							return errors.Join(errors.New("small"), err)
						}
					}
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := relayCount(t, e, "return"); got < clients*rounds/5 {
		t.Fatalf("%d returns to the loop, want at least %d", got, clients*rounds/5)
	}
	if got := relayCount(t, e, "goroutine"); got != 0 {
		t.Fatalf("%d sessions relayed by goroutines from the start, want 0", got)
	}
}
