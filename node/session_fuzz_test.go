package node_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/node"
)

// FuzzSessionMessages sends a sequence of frontend messages, decoded from
// the input, through a logged-in connection of a node with a real backend:
// odd orders of the extended protocol, unknown names, COPY messages out of a
// COPY, Flush storms, FunctionCall, malformed frames, messages after
// Terminate, simple and extended protocol interleaved, pipelines with
// errors. The node runs in this process, so a panic fails the target.
// Checked: the connection answers (or is closed) within answerWait, the
// node then serves a new client, and in a tenant workspace the schema the
// workspace has is the one its blueprint versions build.
func FuzzSessionMessages(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add(seed)
	}
	if testing.Short() {
		f.Skip("needs PostgreSQL and a node")
	}
	envs := []*fuzzEnv{newFuzzEnv(f, false), newFuzzEnv(f, true)}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		e := envs[int(in[0]>>2)%len(envs)]
		tg := e.targets[int(in[0])%len(e.targets)]
		prog := decodeFuzzOps(in[1:])
		e.run(t, tg, prog)
	})
}

// answerWait bounds how long the node may take to answer the end of an
// input (or close the connection); the statements are all short.
const answerWait = 10 * time.Second

// fuzzTarget is a database the inputs log in to.
type fuzzTarget struct {
	database string
	key      string
	// workspace is the tenant workspace whose capture the target
	// exercises; empty for a tenant.
	workspace string
	physical  string
	replay    string // the database the blueprint versions are replayed in
	applied   int    // versions replayed so far
}

type fuzzEnv struct {
	e       *testnode.Env
	su      string // superuser URL of the backend, for a database name to be set
	targets []*fuzzTarget
}

// newFuzzEnv starts a node with myapp (no limits) and guarded (at most 5
// rows per query), each with a table kv, a tenant, and a replay database.
func newFuzzEnv(tb testing.TB, goroutineRelay bool) *fuzzEnv {
	e := testnode.Start(tb, func(c *node.Config) { c.GoroutineRelay = goroutineRelay })
	e.MustDo(tb, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "guarded", "mode": "tenant"}, nil)
	e.WaitReady(tb)
	fe := &fuzzEnv{e: e, su: e.PG.URL()}
	ctx := context.Background()
	// Run before the node stops (cleanups run last first): a session a
	// failed input left stuck on its backend would hold the stop, and the
	// failure's report, forever.
	tb.Cleanup(func() {
		if !tb.Failed() {
			return
		}
		if su, err := pgx.Connect(ctx, fe.su); err == nil {
			_, _ = su.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, fe.physicals())
			su.Close(ctx)
		}
	})
	for _, ws := range []string{"myapp", "guarded"} {
		c := fe.connect(tb, e.ConnString(e.ProxyPassword, fsm.WorkspaceDatabase(ws), "disable"))
		if _, err := c.Exec(ctx, "CREATE TABLE kv (k int PRIMARY KEY, v text)"); err != nil {
			tb.Fatalf("create kv in %s: %v", ws, err)
		}
		c.Close(ctx)
	}
	e.MustDo(tb, "PATCH", "/v1/workspaces/guarded/settings", e.ProxyPassword, "", map[string]int64{"max_rows_per_query": 5}, nil)
	// Targets by the input's first byte: 0 and 1 tenants, 2 and 3 their
	// workspaces; 1 and 3 with the row limit.
	for _, ws := range []string{"myapp", "guarded"} {
		tenant := "t_" + ws
		key := e.CreateTenantOf(tb, ws, tenant)
		e.WaitReady(tb)
		fe.targets = append(fe.targets, &fuzzTarget{database: fsm.TenantDatabase(ws, tenant), key: key})
	}
	for _, ws := range []string{"myapp", "guarded"} {
		tg := &fuzzTarget{
			database:  fsm.WorkspaceDatabase(ws),
			key:       e.ProxyPassword,
			workspace: ws,
			physical:  e.Physical(tb, fsm.WorkspaceDatabase(ws)),
		}
		tg.replay = tg.physical + "_fuzz_replay"
		su := fe.connect(tb, fe.su)
		for _, sql := range []string{`DROP DATABASE IF EXISTS `, `CREATE DATABASE `} {
			if _, err := su.Exec(ctx, sql+pgx.Identifier{tg.replay}.Sanitize()); err != nil {
				tb.Fatalf("%s%s: %v", sql, tg.replay, err)
			}
		}
		su.Close(ctx)
		tb.Cleanup(func() {
			if su, err := pgx.Connect(ctx, fe.su); err == nil {
				_, _ = su.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{tg.replay}.Sanitize()+` WITH (FORCE)`)
				su.Close(ctx)
			}
		})
		fe.targets = append(fe.targets, tg)
	}
	return fe
}

// physicals lists the physical databases of the targets.
func (fe *fuzzEnv) physicals() []string {
	var dbs []string
	fe.e.Node.FSM().View(func(s *fsm.State) {
		for _, tg := range fe.targets {
			if t, ok := s.Resolve(fe.e.ProjectID, tg.database); ok && t.Database != nil {
				dbs = append(dbs, t.Database.Name)
			}
		}
	})
	return dbs
}

func (fe *fuzzEnv) connect(tb testing.TB, connString string) *pgx.Conn {
	tb.Helper()
	return fe.connectTo(tb, connString, "")
}

// backendConn connects as the backend's superuser to a database.
func (fe *fuzzEnv) backendConn(tb testing.TB, database string) *pgx.Conn {
	tb.Helper()
	return fe.connectTo(tb, fe.su, database)
}

// connectTo connects with connString, to database instead of the one it
// names when database is not empty.
func (fe *fuzzEnv) connectTo(tb testing.TB, connString, database string) *pgx.Conn {
	tb.Helper()
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		tb.Fatal(err)
	}
	if database != "" {
		cfg.Database = database
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("connect to %s: %v", cfg.Database, err)
	}
	return c
}

// run logs in to tg, sends prog, checks the connection answers the probe
// at its end (or is closed) in time, then that a new client is served and
// that the workspace's schema is its blueprint's.
func (fe *fuzzEnv) run(t *testing.T, tg *fuzzTarget, prog fuzzProgram) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, fe.e.ConnString(tg.key, tg.database, "disable"))
	if err != nil {
		t.Fatalf("log in to %s: %v", tg.database, err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	conn := hj.Conn
	defer conn.Close()
	r := newFuzzReader(conn)
	for i, chunk := range prog.chunks {
		_ = conn.SetWriteDeadline(time.Now().Add(answerWait))
		if _, err := conn.Write(chunk); err != nil {
			if r.closed() {
				break // the node ended the connection: an answer too
			}
			t.Fatalf("write of chunk %d: %v (the node reads nothing)\n%s", i, err, prog)
		}
		if i < len(prog.chunks)-1 {
			r.waitReady(300 * time.Millisecond) // pacing only: some messages are never answered
		}
	}
	if err := r.waitEnd(answerWait); err != nil {
		t.Fatalf("%v\n%s\nanswers: %s", err, prog, r.seen())
	}
	if prog.closeWrite {
		// The rest of the message never comes: the node ends the
		// connection.
		_ = conn.(*net.TCPConn).CloseWrite()
		r.marker = false
		if err := r.waitEnd(answerWait); err != nil {
			t.Fatalf("after the write side shut: %v\n%s\nanswers: %s", err, prog, r.seen())
		}
	}
	conn.Close()

	c := fe.connect(t, fe.e.ConnString(tg.key, tg.database, "disable"))
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("a new client's SELECT 1 after the input: %v\n%s", err, prog)
	}
	c.Close(ctx)
	// Both clients have left: their sessions end, whatever the backend
	// still owed them.
	for deadline := time.Now().Add(answerWait); ; {
		n := counter(t, fe.e, "tdb_backend_pool_connections", "state", "active")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still live %v after their clients left\n%s", n, answerWait, prog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tg.workspace != "" {
		fe.checkBlueprint(t, tg, prog)
	}
}

// checkBlueprint waits for the workspace's capture lock to be free, replays
// the blueprint versions not yet replayed, and compares the schemas.
func (fe *fuzzEnv) checkBlueprint(t *testing.T, tg *fuzzTarget, prog fuzzProgram) {
	ctx := context.Background()
	su := fe.backendConn(t, tg.physical)
	defer su.Close(ctx)
	deadline := time.Now().Add(answerWait)
	for {
		var n int
		err := su.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`,
			tg.physical).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the capture lock of %s is still held or waited for after the client left\n%s", tg.workspace, prog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var versions []fsm.BlueprintVersion
	fe.e.Node.FSM().View(func(s *fsm.State) {
		for _, w := range s.Projects[fe.e.ProjectID].Workspaces {
			if w.Name == tg.workspace {
				versions = slices.Clone(w.Versions)
			}
		}
	})
	rc := fe.backendConn(t, tg.replay)
	defer rc.Close(ctx)
	for _, v := range versions[tg.applied:] {
		err := pgx.BeginFunc(ctx, rc, func(tx pgx.Tx) error {
			for _, s := range v.Statements {
				if _, err := tx.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
					return fmt.Errorf("%q: %w", s, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("blueprint version %d of %s does not replay: %v\n%s", v.Version, tg.workspace, err, prog)
		}
		tg.applied++
	}
	want, got := readFuzzSchema(t, rc), readFuzzSchema(t, su)
	if want != got {
		t.Fatalf("the schema of %s is not its blueprint's (%d versions):\n%s\ninput:\n%s",
			tg.workspace, len(versions), diffLines(want, got), prog)
	}
}

// readFuzzSchema lists the public tables' columns and the indexes.
func readFuzzSchema(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	rows, err := c.Query(context.Background(), `
		SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// fuzzReader reads the node's messages in the background and keeps the
// types; it notes each ReadyForQuery and the probe's marker row.
type fuzzReader struct {
	events chan byte // message types, and 0 at the end of the connection
	types  []byte
	done   bool
	marker bool
}

const fuzzMarker = "fuzz-end-marker"

func newFuzzReader(conn net.Conn) *fuzzReader {
	r := &fuzzReader{events: make(chan byte, 1<<16)}
	go func() {
		defer close(r.events)
		br := bufio.NewReader(conn)
		var hdr [5]byte
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint32(hdr[1:])) - 4
			if n < 0 || n > 1<<26 {
				r.events <- '!'
				return
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			typ := hdr[0]
			if typ == 'D' && strings.Contains(string(body), fuzzMarker) {
				typ = 'M'
			}
			r.events <- typ
		}
	}()
	return r
}

func (r *fuzzReader) take(typ byte, ok bool) {
	if !ok {
		r.done = true
		return
	}
	r.types = append(r.types, typ)
	if typ == 'M' {
		r.marker = true
	}
}

// waitReady reads answers until a ReadyForQuery or for at most d.
func (r *fuzzReader) waitReady(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for !r.done {
		select {
		case typ, ok := <-r.events:
			r.take(typ, ok)
			if typ == 'Z' {
				return
			}
		case <-timer.C:
			return
		}
	}
}

// closed reports whether the connection has ended, waiting a little for
// the reader to see it.
func (r *fuzzReader) closed() bool {
	r.waitReady(time.Second)
	for !r.done {
		select {
		case typ, ok := <-r.events:
			r.take(typ, ok)
		case <-time.After(time.Second):
			return false
		}
	}
	return true
}

// waitEnd waits for the probe's marker row and the ReadyForQuery after it,
// or the end of the connection.
func (r *fuzzReader) waitEnd(d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for !r.done {
		select {
		case typ, ok := <-r.events:
			r.take(typ, ok)
			if typ == '!' {
				return fmt.Errorf("a message of the node has an impossible length")
			}
			if typ == 'Z' && r.marker {
				return nil
			}
		case <-timer.C:
			return fmt.Errorf("no answer to the input's end within %v, and the connection is open", d)
		}
	}
	return nil
}

func (r *fuzzReader) seen() string {
	for {
		select {
		case typ, ok := <-r.events:
			if !ok {
				return string(r.types) + " (closed)"
			}
			r.types = append(r.types, typ)
		default:
			return string(r.types)
		}
	}
}
