package actors

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"tdb/fsm"
	"tdb/internal/testpg"
	"tdb/wire"
)

func TestMain(m *testing.M) { testpg.Main(m) }

func testPool(t *testing.T) (*Pool, PoolKey, func(context.Context) (*BackendConn, error)) {
	t.Helper()
	url := testpg.Shared(t).URL()
	key := PoolKey{Backend: "local", Database: "postgres", Role: "postgres"}
	dial := func(ctx context.Context) (*BackendConn, error) {
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			return nil, err
		}
		return Hijacked(ctx, key, pc, "tcp", "")
	}
	p := &Pool{}
	t.Cleanup(p.Close)
	return p, key, dial
}

func TestPoolReusesResetSessions(t *testing.T) {
	p, key, dial := testPool(t)
	ctx := context.Background()
	bc, reused, err := p.Get(ctx, key, dial)
	if err != nil || reused {
		t.Fatalf("first get: reused=%v err=%v", reused, err)
	}
	pid := bc.PID
	// Leave state behind: a setting, a prepared statement, a temp table.
	for _, sql := range []string{"SET application_name = 'dirty'", "PREPARE p AS SELECT 1", "CREATE TEMP TABLE tt (id int)"} {
		if err := bc.Exec(sql, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if bc.Params["application_name"] != "dirty" {
		t.Fatalf("ParameterStatus not tracked: %v", bc.Params["application_name"])
	}
	if err := bc.Reset(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.Put(bc)

	bc2, reused, err := p.Get(ctx, key, dial)
	if err != nil || !reused || bc2.PID != pid {
		t.Fatalf("second get: reused=%v pid %d vs %d err=%v", reused, bc2.PID, pid, err)
	}
	if bc2.Params["application_name"] != "" {
		t.Fatalf("application_name survived the reset: %q", bc2.Params["application_name"])
	}
	if err := bc2.Exec("EXECUTE p", 5*time.Second); err == nil {
		t.Fatal("prepared statement survived the reset")
	}
	if err := bc2.Exec("SELECT * FROM tt", 5*time.Second); err == nil {
		t.Fatal("temp table survived the reset")
	}
	bc2.Conn.Close()
}

func TestPoolDropsDeadAndReapsIdle(t *testing.T) {
	p, key, dial := testPool(t)
	ctx := context.Background()
	bc, _, err := p.Get(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	dead := bc.PID
	p.Put(bc)
	// Kill the idle session from another connection: Get must not hand it out.
	killer, _ := dial(ctx)
	if err := killer.Exec("SELECT pg_terminate_backend("+itoa(int(dead))+")", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	killer.Conn.Close()
	time.Sleep(200 * time.Millisecond)
	bc, reused, err := p.Get(ctx, key, dial)
	if err != nil || reused || bc.PID == dead {
		t.Fatalf("got pid %d reused=%v err=%v after its backend was terminated", bc.PID, reused, err)
	}
	p.Put(bc)
	if n := p.Reap(time.Now().Add(time.Hour)); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	if p.IdleCount() != 0 {
		t.Fatal("idle sessions left after reap")
	}
}

func TestParamsKey(t *testing.T) {
	a := ParamsKey(map[string]string{"user": "u", "database": "d", "application_name": "x", "DateStyle": "ISO"})
	b := ParamsKey(map[string]string{"DateStyle": "ISO", "application_name": "x", "user": "other"})
	c := ParamsKey(map[string]string{"DateStyle": "ISO", "application_name": "y"})
	if a != b || a == c {
		t.Fatalf("ParamsKey: %q %q %q", a, b, c)
	}
}

// slowWriteConn makes each write take longer than pgconn's 15 ms slow-write
// timer while slow is set (the login), which starts pgconn's background
// reader.
type slowWriteConn struct {
	net.Conn
	slow *atomic.Bool
}

func (c slowWriteConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.slow.Load() {
		time.Sleep(30 * time.Millisecond) // the reply arrives while pgconn waits
	}
	return n, err
}

// TestHijackedAfterSlowLogin: when pgconn's background reader started during
// the login, the hijacked connection still receives the backend's first
// reply (the reader's pending read would otherwise swallow it and the first
// query through the proxy would hang).
func TestHijackedAfterSlowLogin(t *testing.T) {
	t.Parallel()
	cfg, err := pgconn.ParseConfig(testpg.Shared(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{}
	var slow atomic.Bool
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowWriteConn{Conn: c, slow: &slow}, nil
	}
	ctx := context.Background()
	for i := range 3 {
		slow.Store(true)
		pc, err := pgconn.ConnectConfig(ctx, cfg)
		slow.Store(false)
		if err != nil {
			t.Fatal(err)
		}
		bc, err := Hijacked(ctx, PoolKey{Backend: "local", Database: "postgres", Role: "postgres"}, pc, "tcp", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := bc.Exec("SELECT 1", 3*time.Second); err != nil {
			t.Fatalf("round %d: first query on the hijacked connection: %v", i, err)
		}
		bc.Conn.Close()
	}
}

// TestBackendSessionsShareTheirParams: sessions that report the same
// ParameterStatus values at login share one map; a change one of them
// records (a SET, a reset) goes to its own copy.
func TestBackendSessionsShareTheirParams(t *testing.T) {
	_, _, dial := testPool(t)
	ctx := context.Background()
	var bcs []*BackendConn
	for range 3 {
		bc, err := dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bc.Conn.Close() })
		bcs = append(bcs, bc)
	}
	same := func(a, b map[string]string) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	a, b, c := bcs[0], bcs[1], bcs[2]
	if !same(a.Params, b.Params) || !same(a.Params, c.Params) || a.Params["server_version"] == "" {
		t.Fatalf("three logins of one role keep separate maps: %v", a.Params)
	}
	if err := a.Exec("SET application_name = 'mine'", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if a.Params["application_name"] != "mine" || same(a.Params, b.Params) {
		t.Fatalf("the change was not recorded on a copy: %q", a.Params["application_name"])
	}
	if b.Params["application_name"] == "mine" || c.Params["application_name"] == "mine" {
		t.Fatal("one session's SET changed the others' values")
	}
}

// TestSharedParamsStayBounded: distinct parameter sets beyond the bound
// replace older ones, and a new set is still shared with its equals.
func TestSharedParamsStayBounded(t *testing.T) {
	for i := range maxSharedParams + 50 {
		shareParams(map[string]string{"application_name": "bounded-" + strconv.Itoa(i)})
	}
	sharedParams.mu.Lock()
	n := len(sharedParams.sets)
	sharedParams.mu.Unlock()
	if n > maxSharedParams {
		t.Fatalf("%d sets kept, at most %d wanted", n, maxSharedParams)
	}
	a := shareParams(map[string]string{"application_name": "bounded-last"})
	b := shareParams(map[string]string{"application_name": "bounded-last"})
	if reflect.ValueOf(a).UnsafePointer() != reflect.ValueOf(b).UnsafePointer() {
		t.Fatal("a full set of shared maps stopped sharing")
	}
}

// closeCountConn is a connection that counts its closes.
type closeCountConn struct {
	net.Conn
	closed *int
}

func (c closeCountConn) Close() error { *c.closed++; return nil }

// TestPoolBoundsIdleSessionsPerDatabase: a client that logs in with new
// startup parameters each time (application_name) makes a new pool key
// each time. The sessions it leaves behind must not pile up, counted by
// no connection limit, until the backend server has no connection left
// for other databases: past the bound, the database's oldest idle session
// is closed; another database's are not touched.
func TestPoolBoundsIdleSessionsPerDatabase(t *testing.T) {
	p := &Pool{} // at most 64 idle sessions per key, and per database
	t.Cleanup(p.Close)
	closed := 0
	park := func(db, app string) {
		bc := &BackendConn{
			Key:  PoolKey{Backend: "local", Database: db, Role: "r", Params: ParamsKey(map[string]string{"application_name": app})},
			Conn: closeCountConn{closed: &closed}, Reader: wire.NewFrameReader(strings.NewReader(""), 0),
		}
		p.Put(bc)
	}
	park("other", "app")
	for i := range 100 {
		park("tenant", "app_"+strconv.Itoa(i))
	}
	if n := p.IdleCount(); n != 65 || closed != 36 {
		t.Fatalf("after 100 sessions of one database, each with its own application_name, and one of another: "+
			"%d idle, %d closed; want 64 of the first and the other's (65), 36 closed", n, closed)
	}
	if p.TryGet(PoolKey{Backend: "local", Database: "tenant", Role: "r", Params: ParamsKey(map[string]string{"application_name": "app_99"})}) == nil {
		t.Fatal("the newest idle session was closed, want the oldest")
	}
	if p.TryGet(PoolKey{Backend: "local", Database: "other", Role: "r", Params: ParamsKey(map[string]string{"application_name": "app"})}) == nil {
		t.Fatal("another database's idle session was closed")
	}
}

// TestPoolForgetsDeletedDatabases: a backend session of a database the
// state no longer has (deleted, or being deleted) is closed rather than
// pooled, and Forget takes out those already idle, with the parameters
// their keys reported, leaving other databases' sessions alone.
func TestPoolForgetsDeletedDatabases(t *testing.T) {
	p := NewProxy(ProxyConfig{GoroutineRelay: true, FSM: fsm.New(), Logf: t.Logf})
	defer p.Close()
	parked := func(db string) (*BackendConn, net.Conn) {
		mine, theirs := net.Pipe()
		t.Cleanup(func() { mine.Close(); theirs.Close() })
		return &BackendConn{Key: PoolKey{Backend: "local", Database: db, Role: "admin"}, Conn: mine, Reader: wire.NewFrameReader(mine, 0), Params: map[string]string{"a": "b"}}, theirs
	}
	bc, peer := parked("gone")
	p.park(bc)
	if n := p.PoolIdle(); n != 0 {
		t.Fatalf("a session of a database the state does not have was pooled (%d idle)", n)
	}
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the session of the deleted database is still open")
	}

	a, _ := parked("a")
	b, _ := parked("b")
	p.pool.Put(a)
	p.pool.Put(b)
	if p.PoolIdle() != 2 || p.pool.Known(b.Key) == nil {
		t.Fatalf("idle %d, want 2", p.PoolIdle())
	}
	if n := p.pool.Forget(map[[2]string]bool{{"local", "b"}: true}); n != 1 {
		t.Fatalf("forgot %d sessions, want 1", n)
	}
	if p.PoolIdle() != 1 || p.pool.Known(b.Key) != nil || p.pool.Known(a.Key) == nil {
		t.Fatalf("after Forget: idle %d, known b %v", p.PoolIdle(), p.pool.Known(b.Key))
	}
	if dbs := p.pool.Databases(); len(dbs) != 1 || dbs[0] != [2]string{"local", "a"} {
		t.Fatalf("databases %v, want only local/a", dbs)
	}
}
