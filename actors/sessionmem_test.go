package actors

import (
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/wire/classify"
	"tdb/wire/evloop"
)

// TestSessionForgetsPortalsWithTheirTransaction: PostgreSQL drops every
// portal a Bind made when its transaction ends, so a client that binds a
// new named portal in each batch holds none of them on the backend. The
// session must not keep them either: its memory would grow with every
// batch of a client for as long as it stays connected.
func TestSessionForgetsPortalsWithTheirTransaction(t *testing.T) {
	h := benchSession(t, 0)
	s := h.s
	var out evloop.Out
	prepare(t, h)
	const batches = 50
	for i := range batches {
		portal := "portal_" + strconv.Itoa(i)
		roundTrip(t, h, &out,
			[]msg{
				wireMsg(&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("1")}}),
				wireMsg(&pgproto3.Sync{}),
			},
			[]msg{wireMsg(&pgproto3.BindComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
	}
	// One executed too, and one bound inside a transaction, kept while
	// the transaction lasts.
	roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Bind{DestinationPortal: "run", PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("1")}}),
		wireMsg(&pgproto3.Execute{Portal: "run"}), wireMsg(&pgproto3.Sync{})},
		withResult(wireMsg(&pgproto3.BindComplete{})))
	roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Query{String: "BEGIN"})},
		[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'})})
	roundTrip(t, h, &out,
		[]msg{
			wireMsg(&pgproto3.Bind{DestinationPortal: "in_tx", PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("1")}}),
			wireMsg(&pgproto3.Sync{}),
		},
		[]msg{wireMsg(&pgproto3.BindComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'})})
	s.mu.Lock()
	tracked, limited := len(s.track.portals), len(s.gov.lim.portals)
	_, inTx := s.track.portals["in_tx"]
	s.mu.Unlock()
	if tracked != 1 || limited != 1 || !inTx {
		t.Fatalf("after %d batches that each bound a portal, and one open transaction that bound in_tx: "+
			"the session tracks %d portals and limits %d (in_tx tracked: %v), want in_tx alone",
			batches+1, tracked, limited, inTx)
	}
	roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Query{String: "COMMIT"})},
		[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("COMMIT")}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
	s.mu.Lock()
	tracked, limited = len(s.track.portals), len(s.gov.lim.portals)
	s.mu.Unlock()
	if tracked != 0 || limited != 0 {
		t.Fatalf("after COMMIT the session tracks %d portals and limits %d, want none", tracked, limited)
	}
}

// TestSessionForgetsPortalsOfATransactionThatNeverGoesIdle: a client
// that ends each transaction and begins the next in one Query (COMMIT;
// BEGIN) never sees ReadyForQuery 'I', yet PostgreSQL drops the portals
// at each COMMIT. A portal bound behind the COMMIT, before its answer,
// stays.
func TestSessionForgetsPortalsOfATransactionThatNeverGoesIdle(t *testing.T) {
	h := benchSession(t, 0)
	s := h.s
	var out evloop.Out
	prepare(t, h)
	roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Query{String: "BEGIN"})},
		[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'})})
	const txs = 50
	for i := range txs {
		portal := "portal_" + strconv.Itoa(i)
		roundTrip(t, h, &out,
			[]msg{
				wireMsg(&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("1")}}),
				wireMsg(&pgproto3.Execute{Portal: portal, MaxRows: 1}),
				wireMsg(&pgproto3.Sync{}),
			},
			[]msg{wireMsg(&pgproto3.BindComplete{}), wireMsg(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}),
				wireMsg(&pgproto3.PortalSuspended{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'})})
		end := "COMMIT"
		if i%2 == 1 {
			end = "ROLLBACK"
		}
		roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Query{String: end + "; BEGIN"})},
			[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte(end)}), wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}),
				wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'})})
	}
	// Bound behind the COMMIT, sent before its answer: the backend holds it.
	roundTrip(t, h, &out,
		[]msg{
			wireMsg(&pgproto3.Query{String: "COMMIT; BEGIN"}),
			wireMsg(&pgproto3.Bind{DestinationPortal: "behind", PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("1")}}),
			wireMsg(&pgproto3.Sync{}),
		},
		[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("COMMIT")}), wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}),
			wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'}), wireMsg(&pgproto3.BindComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'T'})})
	s.mu.Lock()
	tracked, limited := len(s.track.portals), len(s.gov.lim.portals)
	_, trackedBehind := s.track.portals["behind"]
	_, limitedBehind := s.gov.lim.portals["behind"]
	s.mu.Unlock()
	if tracked != 1 || limited != 1 || !trackedBehind || !limitedBehind {
		t.Fatalf("after %d transactions that each bound a portal and ended with the next one's BEGIN, and a portal bound behind the last COMMIT: "+
			"the session tracks %d portals and limits %d (behind: %v, %v), want that one alone",
			txs, tracked, limited, trackedBehind, limitedBehind)
	}
}

// TestTrackerKeepsPortalsBoundBehindTheBatch: a portal bound by a batch
// the client pipelined behind the one whose transaction ended is the
// backend's; if the backend then skips that Bind, there is no portal of
// that name left.
func TestTrackerKeepsPortalsBoundBehindTheBatch(t *testing.T) {
	tr := newTracker()
	tr.parse("s", "SELECT 1", classify.Classify("SELECT 1"))
	tr.sync()
	tr.answered('P')
	tr.readyForQuery('I')
	for range 2 { // two batches, sent before any answer
		tr.bind("p", "s")
		tr.execute("p")
		tr.sync()
	}
	tr.answered('B')
	tr.commandComplete([]byte("SELECT 1"))
	tr.readyForQuery('I')
	if _, ok := tr.portals["p"]; !ok {
		t.Fatal("the portal the second batch binds was forgotten at the first batch's end")
	}
	tr.errorResponse() // the second Bind fails
	tr.readyForQuery('I')
	if len(tr.portals) != 0 {
		t.Fatalf("portals %v after the second Bind failed, want none", tr.portals)
	}
}

// TestSessionForgetsDeallocatedStatements: a statement prepared with Parse
// and dropped with DEALLOCATE (by name or ALL) is gone from the backend;
// the session must forget it too, or a client preparing and dropping a
// new name in a loop would grow its memory by each text.
func TestSessionForgetsDeallocatedStatements(t *testing.T) {
	h := benchSession(t, 0)
	s := h.s
	var out evloop.Out
	const rounds = 20
	for i := range rounds {
		name := "stmt_" + strconv.Itoa(i)
		roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Parse{Name: name, Query: benchSelect}), wireMsg(&pgproto3.Sync{})},
			[]msg{wireMsg(&pgproto3.ParseComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
		roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Query{String: "DEALLOCATE " + name})},
			[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE")}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
	}
	for i := range rounds {
		roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Parse{Name: "other_" + strconv.Itoa(i), Query: benchSelect}), wireMsg(&pgproto3.Sync{})},
			[]msg{wireMsg(&pgproto3.ParseComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
	}
	// DEALLOCATE ALL, with a Parse pipelined behind it: that one stays.
	roundTrip(t, h, &out, []msg{wireMsg(&pgproto3.Query{String: "DEALLOCATE ALL"}),
		wireMsg(&pgproto3.Parse{Name: "kept", Query: benchSelect}), wireMsg(&pgproto3.Sync{})},
		[]msg{wireMsg(&pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE ALL")}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'}),
			wireMsg(&pgproto3.ParseComplete{}), wireMsg(&pgproto3.ReadyForQuery{TxStatus: 'I'})})
	s.mu.Lock()
	_, kept := s.track.prepared["kept"]
	n := len(s.track.prepared)
	s.mu.Unlock()
	if n != 1 || !kept {
		t.Fatalf("after %d statements each dropped with DEALLOCATE, %d more dropped with DEALLOCATE ALL and one prepared behind it, "+
			"the session holds %d prepared statements (the last one: %v), want the last one alone", rounds, rounds, n, kept)
	}
}
