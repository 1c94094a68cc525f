package actors

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/wire"
	"tdb/wire/classify"
)

// TestGuardQuery: only batches that may both write and return rows, and
// hold nothing that cannot run in the proxy's transaction, are guarded.
func TestGuardQuery(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1", false},
		{"INSERT INTO t VALUES (1)", false},
		{"INSERT INTO t VALUES (1) RETURNING id", true},
		{"delete from t returning *", true},
		{"UPDATE t SET updated_at = now()", false},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", true},
		{"WITH x AS (SELECT 1) SELECT * FROM x", false},
		{"SELECT 1; INSERT INTO t VALUES (1)", true},
		{"INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", false},
		{"SET search_path = a; DELETE FROM t RETURNING id", true},
		{"BEGIN; DELETE FROM t RETURNING id; COMMIT", false},
		{"VACUUM t; SELECT 1", false},
		{"TRUNCATE t; SELECT 1", true},
		{"SELECT * FROM t FOR UPDATE", false},
		{"(SELECT 1) UNION (SELECT 2); INSERT INTO t VALUES (1)", true},
		{"( VALUES (1), (2)); INSERT INTO t VALUES (1)", true},
		{"(SELECT 1) UNION (SELECT 2)", false},
		{"SELECT count(*), lower(name) FROM t GROUP BY 2", false},
		{"SELECT add_order(g) FROM generate_series(1, 3) g", true},
		{"WITH x AS (SELECT bump()) SELECT * FROM x", true},
		{"VALUES (pg_notify('c', 'x'))", true},
	} {
		if got := guardQuery(classify.Classify(tc.sql), nil); got != tc.want {
			t.Errorf("guardQuery(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}

// TestFinalFor: what the proxy sends after a batch, by whether it guarded
// it, the status the batch ended with, the row limit and what the client
// sent behind it.
func TestFinalFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		guarded bool
		over    bool
		status  byte
		others  int
		want    string
	}{
		{"guarded, fine", true, false, 'T', 0, guardCommit},
		{"guarded, past the limit", true, true, 'T', 0, guardRollback},
		{"guarded, failed", true, false, 'E', 0, guardRollback},
		{"guarded, ended by the batch", true, false, 'I', 0, ""},
		{"client's transaction past the limit", false, true, 'T', 0, guardAbort},
		{"client's transaction past the limit, more sent behind", false, true, 'T', 1, ""},
		{"client's transaction, failed anyway", false, true, 'E', 0, ""},
		{"no transaction past the limit", false, true, 'I', 0, ""},
		{"nothing", false, false, 'T', 0, ""},
	} {
		s := &session{gov: &governor{lim: newLimiter(nil)}, guarded: tc.guarded}
		if tc.over {
			s.gov.lim.overRows = 5
		}
		if got := s.finalFor(tc.status, tc.others); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A late cancel that hits the statement giving the capture lock back
// leaves the lock held: it is sent again, and a session that still holds
// it is not pooled.
func TestUnlockSentAgainAfterAnError(t *testing.T) {
	s := &session{}
	errBody := wire.AppendErrorResponse(nil, wire.NewError("ERROR", "57014", "canceling statement due to user request"))[5:]
	for try := 1; try <= maxGuardRollbacks+1; try++ {
		s.swallow.Store(swallowUnlock)
		s.inflight = 1
		s.swallowed(wire.MsgErrorResponse, errBody)
		_, _, next := s.swallowed(wire.MsgReadyForQuery, []byte{'I'})
		if try <= maxGuardRollbacks {
			if next != unlockSQL || s.inflight != 1 || s.swallow.Load() != swallowUnlock {
				t.Fatalf("try %d: next %q, inflight %d, swallow %d", try, next, s.inflight, s.swallow.Load())
			}
			continue
		}
		if next != "" || !s.lost || s.swallow.Load() != swallowNone {
			t.Fatalf("after %d tries: next %q, lost %v", try, next, s.lost)
		}
	}
	// An unlock that succeeds ends the exchange.
	s = &session{}
	s.swallow.Store(swallowUnlock)
	s.inflight = 1
	if _, _, next := s.swallowed(wire.MsgReadyForQuery, []byte{'I'}); next != "" || s.inflight != 0 || s.lost {
		t.Fatalf("a clean unlock: next %q, inflight %d, lost %v", next, s.inflight, s.lost)
	}
}

// TestBatchScan: an extended-protocol batch is guarded when the statements
// read behind its first may both write and return rows, or when they
// cannot all be told (no Sync yet, a statement that cannot be guarded, a
// statement not prepared).
func TestBatchScan(t *testing.T) {
	sel := stmtInfo{text: "SELECT * FROM t", kind: classify.DML}
	ins := stmtInfo{text: "INSERT INTO t VALUES (1)", kind: classify.DML}
	b := batchScan{classify: classify.Classify, prepared: map[string]stmtInfo{"s_ins": ins, "s_sel": sel}}
	enc := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
		var out []byte
		for _, m := range msgs {
			var err error
			if out, err = m.Encode(out); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	sync := &pgproto3.Sync{}
	for _, tc := range []struct {
		name  string
		first stmtInfo
		ahead []byte
		want  bool
	}{
		{"one select", sel, enc(&pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, sync), false},
		{"one insert", ins, enc(&pgproto3.Bind{}, &pgproto3.Execute{}, sync), false},
		{"select then insert", sel, enc(&pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "INSERT INTO t VALUES (2)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, sync), true},
		{"insert then select", ins, enc(&pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, sync), true},
		{"select then prepared insert", sel, enc(&pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "s_ins"}, &pgproto3.Execute{}, sync), true},
		{"two selects", sel, enc(&pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "s_sel"}, &pgproto3.Execute{}, sync), false},
		{"unknown statement", sel, enc(&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Execute{}, sync), true},
		{"no sync yet", sel, enc(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}), true},
		{"cut message", sel, enc(&pgproto3.Bind{}, &pgproto3.Execute{}, sync)[:7], true},
		{"nothing behind", sel, nil, true},
		{"statement outside a transaction", sel, enc(&pgproto3.Parse{Query: "VACUUM t"}, sync), true},
		{"query inside", sel, enc(&pgproto3.Query{String: "SELECT 1"}, sync), true},
		{"prepared only", sel, enc(&pgproto3.Describe{ObjectType: 'S'},
			&pgproto3.Parse{Name: "i", Query: "INSERT INTO t VALUES (2)"}, &pgproto3.Describe{ObjectType: 'S', Name: "i"}, sync), false},
		{"parenthesised select then insert", stmtInfo{text: "(SELECT 1)", kind: classify.DML}, enc(&pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "INSERT INTO t VALUES (2)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, sync), true},
	} {
		ok, w, rw := guardable(tc.first.kind, tc.first.text, nil)
		if !ok {
			t.Fatalf("%s: first statement not guardable", tc.name)
		}
		if got := b.mayWriteAndReturnRows(w, rw, "", tc.first, tc.ahead); got != tc.want {
			t.Errorf("%s: guarded %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestQueryCommitsWritesAndRows: with a row limit, a Query that may write
// and return rows and also commits is refused; one that does not commit,
// or only reads, or only writes, is not.
func TestQueryCommitsWritesAndRows(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"BEGIN; SELECT * FROM t; INSERT INTO t VALUES (1); COMMIT", true},
		{"BEGIN; INSERT INTO t VALUES (1) RETURNING id; COMMIT", true},
		{"INSERT INTO t VALUES (1) RETURNING id; COMMIT", true},
		{"SELECT 1; COMMIT; INSERT INTO t VALUES (1)", true},
		{"BEGIN; SELECT 1; INSERT INTO t VALUES (1); END", true},
		{"BEGIN; SELECT 1; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'g'", true},
		{"BEGIN; CALL p(); COMMIT", true},
		{"BEGIN; SELECT * FROM t; INSERT INTO t VALUES (1)", false},
		{"BEGIN; SELECT * FROM t; COMMIT", false},
		{"BEGIN; INSERT INTO t VALUES (1); UPDATE t SET a = 1; COMMIT", false},
		{"BEGIN; SELECT * FROM t; INSERT INTO t VALUES (1); ROLLBACK", false},
		{"SELECT 1; INSERT INTO t VALUES (1)", false},
		{"BEGIN; CREATE TABLE a (id int); CREATE INDEX i ON a (id); COMMIT", false},
		{"BEGIN; CREATE TABLE b (id int); INSERT INTO b VALUES (1); COMMIT", false},
		{"BEGIN; LOCK TABLE a IN EXCLUSIVE MODE; INSERT INTO a VALUES (1); COMMIT", false},
		{"BEGIN; DO 'BEGIN NULL; END'; COMMIT", true},
	} {
		if got := queryCommitsWritesAndRows(classify.Classify(tc.sql), false, nil); got != tc.want {
			t.Errorf("queryCommitsWritesAndRows(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
	// In a transaction that wrote before, a read and a COMMIT are enough.
	for sql, want := range map[string]bool{
		"SELECT * FROM t; COMMIT":    true,
		"SELECT * FROM t":            false,
		"UPDATE t SET a = 1; COMMIT": false,
	} {
		if got := queryCommitsWritesAndRows(classify.Classify(sql), true, nil); got != want {
			t.Errorf("after a write, queryCommitsWritesAndRows(%q) = %v, want %v", sql, got, want)
		}
	}
}

// TestPumpStoppedForTheLoopKeepsANewHold: the backend pump stops at a quiet
// ReadyForQuery to hand the session back to the event loop, and the client
// pump may begin a guarded batch before it sees that. The stopped pump must
// not let go of that batch's hold: a Terminate behind the batch would no
// longer wait for the proxy's COMMIT, the session would end with the
// batch's transaction open, and its rows would be lost. A pump that stopped
// because the backend went away lets go of everything.
func TestPumpStoppedForTheLoopKeepsANewHold(t *testing.T) {
	s := &session{}
	s.mu.Lock()
	s.guarded = true // as guardBatch, after the pump stopped
	s.pend(1)
	hold := s.pending
	s.mu.Unlock()

	s.pumpStopped(true)
	if s.gate(wire.MsgTerminate) != hold {
		t.Fatal("a Terminate behind the guarded batch no longer waits for its end")
	}
	select {
	case <-hold:
		t.Fatal("the hold was let go")
	default:
	}

	s.pumpStopped(false)
	select {
	case <-hold:
	default:
		t.Fatal("a pump whose backend went away kept the client waiting")
	}
	if s.gate(wire.MsgTerminate) != nil {
		t.Fatal("a Terminate still waits after the backend went away")
	}
}

// TestBatchHoldsDDL: the messages behind a batch's first tell whether it
// holds DDL up to its Sync; where they end before it with no Flush (or
// COPY) among them, the client sends more before it waits for an answer,
// and the batch is read on (more). Behind a Flush it may wait: nothing is
// held.
func TestBatchHoldsDDL(t *testing.T) {
	ddl := stmtInfo{text: "ALTER TABLE t ADD COLUMN c int", kind: classify.DDL}
	b := batchScan{classify: classify.Classify, prepared: map[string]stmtInfo{"s_ddl": ddl}}
	enc := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
		var out []byte
		for _, m := range msgs {
			var err error
			if out, err = m.Encode(out); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	alter := &pgproto3.Parse{Query: "ALTER TABLE t ADD COLUMN c int"}
	first := []interface{ Encode([]byte) ([]byte, error) }{&pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}}
	with := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
		return enc(append(append([]interface{ Encode([]byte) ([]byte, error) }{}, first...), msgs...)...)
	}
	for _, tc := range []struct {
		name        string
		ahead       []byte
		holds, more bool
	}{
		{"DDL later", with(alter, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}), true, false},
		{"prepared DDL later", with(&pgproto3.Bind{PreparedStatement: "s_ddl"}, &pgproto3.Execute{}, &pgproto3.Sync{}), true, false},
		{"no DDL", with(&pgproto3.Sync{}), false, false},
		{"nothing behind", nil, false, true},
		{"no Sync yet", with(), false, true},
		{"cut message", with(alter)[:20], false, true},
		{"DDL behind a Flush", with(&pgproto3.Flush{}, alter), false, false},
		{"DDL behind a COPY", with(&pgproto3.Parse{Query: "COPY t FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, alter), false, false},
		{"a Query inside", with(&pgproto3.Query{String: "ALTER TABLE t ADD COLUMN c int"}), false, false},
		{"a Terminate", with(&pgproto3.Terminate{}), false, false},
	} {
		if holds, more := b.holdsDDL(tc.ahead); holds != tc.holds || more != tc.more {
			t.Errorf("%s: holds %v, more %v; want %v, %v", tc.name, holds, more, tc.holds, tc.more)
		}
	}
}
