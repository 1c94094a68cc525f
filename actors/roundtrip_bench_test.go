package actors

import (
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/fsm"
	"tdb/querylog"
	"tdb/wire/evloop"
)

// The session's own work on one pgbench -S transaction, as the event loop
// calls it (loopHandler.Message and Read for every message both ways):
// classification, the guards, statement tracking, the workspace limits and
// the query log entry, without the system calls. What tdb adds per
// transaction over a proxy that only forwards bytes.
//
//	go test -run XXX -bench RoundTrip -benchmem ./actors

// benchSession is a logged-in session of a control workspace with the query
// log on, relayed by the loop; timeoutMs > 0 sets the workspace's
// query_timeout_ms (a timer per statement).
func benchSession(b testing.TB, timeoutMs int64) *loopHandler {
	b.Helper()
	const pid = "tdb_0000abcd"
	f, _, apply := testProject(b, pid, map[string]string{"local": "postgres://postgres@127.0.0.1:1/postgres"})
	ws := workspace(pid, "controlplane", "p0000abcd__controlplane_workspace", "local")
	ws.Mode = fsm.ModeControl
	apply(fsm.CmdCreateWorkspace, ws)
	if timeoutMs > 0 {
		apply(fsm.CmdUpdateWorkspaceSettings, &fsm.UpdateWorkspaceSettings{ProjectID: pid, Name: "controlplane", QueryTimeoutMs: &timeoutMs})
	}
	ql := querylog.New(0, io.Discard)
	b.Cleanup(ql.Close)
	proxy := NewProxy(ProxyConfig{GoroutineRelay: true, FSM: f, Policy: NewPolicies(PolicyConfig{QueryLog: ql})})
	s := &session{
		proxy: proxy, txStatus: 'I', nonce: "0123456789ab", track: newTracker(),
		login: identity{projectID: pid, database: "controlplane_workspace", keyID: "key_project", role: fsm.RoleAdmin,
			kind: fsm.KindWorkspace, workspace: "controlplane", mode: fsm.ModeControl},
	}
	startGovernor(s, "127.0.0.1")
	b.Cleanup(s.gov.end)
	return &loopHandler{s: s}
}

// msg is one protocol message: type and body.
type msg struct {
	typ  byte
	body []byte
}

// wireMsg encodes m as the handler sees it.
func wireMsg(m interface{ Encode([]byte) ([]byte, error) }) msg {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return msg{b[0], b[5:]}
}

var (
	benchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
	// What PostgreSQL answers for one row of pgbench's select.
	benchResult = []msg{
		wireMsg(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
			{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}}),
		wireMsg(&pgproto3.DataRow{Values: [][]byte{[]byte("4242")}}),
		wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}),
		wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}),
	}
	// The client's Bind, Describe, Execute and Sync of the statement stmt.
	bindAndRun = func(stmt string) []msg {
		return []msg{
			wireMsg(&pgproto3.Bind{PreparedStatement: stmt, Parameters: [][]byte{[]byte("4242")}}),
			wireMsg(&pgproto3.Describe{ObjectType: 'P'}),
			wireMsg(&pgproto3.Execute{}),
			wireMsg(&pgproto3.Sync{}),
		}
	}
)

func withResult(pre ...msg) []msg { return append(pre, benchResult...) }

// roundTrip hands each client message, then each backend message, to the
// handler as the loop does, after one read of the client's messages.
func roundTrip(b testing.TB, h *loopHandler, out *evloop.Out, client, backend []msg) {
	n := 0
	for _, m := range client {
		n += len(m.body) + 5
	}
	h.Read(evloop.Client, n) // a driver's messages come in one read
	for _, m := range client {
		if v := h.Message(evloop.Client, m.typ, m.body, out); v != evloop.Continue {
			b.Fatalf("client %c: verdict %v", m.typ, v)
		}
	}
	out.Reset()
	for _, m := range backend {
		if v := h.Message(evloop.Backend, m.typ, m.body, out); v != evloop.Continue {
			b.Fatalf("backend %c: verdict %v", m.typ, v)
		}
	}
	out.Reset()
}

func benchRoundTrip(b *testing.B, timeoutMs int64, setup func(testing.TB, *loopHandler), client [][]msg, backend []msg) {
	h := benchSession(b, timeoutMs)
	if setup != nil {
		setup(b, h)
	}
	var out evloop.Out
	roundTrip(b, h, &out, client[0], backend)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		roundTrip(b, h, &out, client[i%len(client)], backend)
	}
	b.StopTimer()
	if got := h.s.proxy.cfg.Policy.queryLog().Len(); got == 0 {
		b.Fatal("no statement reached the query log")
	}
}

// simpleQueries are pgbench -M simple's statement with 1000 literals.
func simpleQueries() [][]msg {
	var qs [][]msg
	for i := range 1000 {
		q := "SELECT abalance FROM pgbench_accounts WHERE aid = " + itoa(i*7919%100000+1) + ";"
		qs = append(qs, []msg{wireMsg(&pgproto3.Query{String: q})})
	}
	return qs
}

func extendedQuery() [][]msg {
	return [][]msg{append([]msg{wireMsg(&pgproto3.Parse{Query: benchSelect})}, bindAndRun("")...)}
}

func preparedQuery() [][]msg { return [][]msg{bindAndRun("P0_1")} }

func prepare(tb testing.TB, h *loopHandler) {
	var out evloop.Out // discarded
	roundTrip(tb, h, &out, []msg{wireMsg(&pgproto3.Parse{Name: "P0_1", Query: benchSelect}), wireMsg(&pgproto3.Sync{})},
		[]msg{wireMsg(&pgproto3.ParseComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
}

var (
	simpleResult   = benchResult
	extendedResult = withResult(wireMsg(&pgproto3.ParseComplete{}), wireMsg(&pgproto3.BindComplete{}))
	preparedResult = withResult(wireMsg(&pgproto3.BindComplete{}))
)

func BenchmarkRoundTripSimple(b *testing.B) {
	benchRoundTrip(b, 0, nil, simpleQueries(), simpleResult)
}

func BenchmarkRoundTripExtended(b *testing.B) {
	benchRoundTrip(b, 0, nil, extendedQuery(), extendedResult)
}

func BenchmarkRoundTripPrepared(b *testing.B) {
	benchRoundTrip(b, 0, prepare, preparedQuery(), preparedResult)
}

// With query_timeout_ms set every statement arms the session's timer.
func BenchmarkRoundTripPreparedTimeout(b *testing.B) {
	benchRoundTrip(b, 30000, prepare, preparedQuery(), preparedResult)
}

// TestStatementTimerIsReused: with query_timeout_ms set, a session arms one
// timer for all its statements, without allocating; a firing that comes
// while the next statement's deadline is still ahead cancels nothing.
func TestStatementTimerIsReused(t *testing.T) {
	h := benchSession(t, 30000)
	prepare(t, h)
	var out evloop.Out
	query := preparedQuery()[0]
	round := func() { roundTrip(t, h, &out, query, preparedResult) }
	round()
	g := h.s.gov
	timer := g.timer
	if timer == nil {
		t.Fatal("no statement timer armed")
	}
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Fatalf("a round trip with query_timeout_ms allocates %.1f times", allocs)
	}
	if g.timer != timer {
		t.Fatal("the session made a new timer")
	}
	// A statement in flight, its deadline 30 s ahead: a late firing of the
	// timer (meant for an earlier statement) leaves it alone.
	for _, m := range query {
		h.Message(evloop.Client, m.typ, m.body, &out)
	}
	h.Message(evloop.Backend, '2', nil, &out)
	gen := g.timerGen
	g.fire()
	if g.cancelPending() || g.lim.timeoutMs != 0 || g.timerGen != gen {
		t.Fatalf("a firing before the deadline expired the statement (cancel pending %v, timeout %d)", g.cancelPending(), g.lim.timeoutMs)
	}
}

// TestInspectRemembersTheLastAllowedText: a repeated text is classified and
// guarded once; a refused text in between neither is remembered nor changes
// what the remembered one classified as (its statement lives in a buffer
// the next classification rewrites).
func TestInspectRemembersTheLastAllowedText(t *testing.T) {
	s := benchSession(t, 0).s
	allowed := "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	refused := "SELECT set_config('standard_conforming_strings', 'off', false)"
	check := func(step string) {
		t.Helper()
		r, rej, _ := s.inspect(allowed)
		if rej != nil || len(r.Statements) != 1 || r.Statements[0].Text != allowed || r.Statements[0].Tag != "SELECT" {
			t.Fatalf("%s: %q gave %+v, %v", step, allowed, r.Statements, rej)
		}
	}
	check("first")
	if s.allowed != allowed {
		t.Fatalf("the session remembers %q", s.allowed)
	}
	check("again")
	for range 2 {
		if _, rej, _ := s.inspect(refused); rej == nil || rej.Code != "42501" {
			t.Fatalf("%q was let through: %v", refused, rej)
		}
		if s.allowed != "" {
			t.Fatalf("after a refusal the session remembers %q", s.allowed)
		}
	}
	check("after a refusal")
}
