package actors

import (
	"bytes"

	"tdb/wire/classify"
)

// stmtInfo is what the proxy knows of a statement the client sent.
type stmtInfo struct {
	text      string
	kind      classify.Kind
	savepoint string // the savepoint a SAVEPOINT, RELEASE or ROLLBACK TO names
	// risky: it may change how the backend reads statement text
	// (mayChangeSettings)
	risky bool
	// noTxn: it cannot run in a transaction block (CREATE INDEX
	// CONCURRENTLY), so it commits when it completes
	noTxn bool
}

// trackItem is one entry of the tracker's queue: a statement awaiting its
// result, the end of a batch (a simple Query or a Sync) awaiting
// ReadyForQuery, or (exact trackers) a Parse, Bind, Close or Describe
// awaiting its answer.
type trackItem struct {
	stmt stmtInfo
	sync bool
	op   byte // 'P', 'B', 'C' or 'D'; 0 for a statement or a sync
	undo undoEntry
}

// undoEntry is what a Parse, Bind or Close changed in the tracker's maps,
// to take back when the backend skips the message (after an error in its
// batch) or refuses it.
type undoEntry struct {
	portal bool   // in portals; else in prepared
	name   string // the statement's or portal's name
	old    stmtInfo
	had    bool // name had an entry before
}

type savepointMark struct {
	name string
	n    int // DDL statements done before the savepoint
	w    int // statements that changed rows before it
}

// tracker follows the statements of one session through the backend's
// responses, so the proxy knows which DDL statements committed. It is the
// synchronous core of DDL capture: client-side methods are called by the
// client pump, backend-side methods by the backend pump, each in protocol
// order; the session serializes them with its lock.
type tracker struct {
	queue    fifo[trackItem]
	prepared map[string]stmtInfo // extended protocol: statement name -> statement
	portals  map[string]stmtInfo // portal name -> statement

	txDDL []string // DDL done in the current transaction
	// txWrites counts the statements of the current transaction that
	// changed rows, and writeTag is the first one's command tag: data
	// changes a blueprint version does not carry to tenants.
	txWrites int
	writeTag string
	// writes and firstWrite: those of the transactions whose DDL
	// committed, handed out with it (takeWrites).
	writes     int
	firstWrite string
	marks      []savepointMark
	failed     bool     // an error happened in the current transaction
	committed  []string // DDL that committed, handed out at ReadyForQuery
	// exact: follow each Parse, Bind and Close to its answer, and take
	// back those the backend skipped after an error in their batch (it
	// skips everything up to Sync). Sessions whose DDL is recorded need
	// it: a statement name the backend still holds must not be forgotten.
	exact bool
}

func newTracker() *tracker {
	return &tracker{} // its maps are made at their first entry
}

// query records a simple-protocol Query and its statements.
func (t *tracker) query(r classify.Result) {
	for _, s := range r.Statements {
		t.queue.push(trackItem{stmt: stmtInfo{text: s.Text, kind: s.Kind, savepoint: s.Savepoint, noTxn: s.NoTxn}})
	}
	t.queue.push(trackItem{sync: true})
}

// parse records an extended-protocol Parse.
func (t *tracker) parse(name string, r classify.Result) {
	var info stmtInfo
	if len(r.Statements) == 1 {
		st := &r.Statements[0]
		info = stmtInfo{text: st.Text, kind: st.Kind, savepoint: st.Savepoint, noTxn: st.NoTxn}
	}
	if t.prepared == nil {
		t.prepared = map[string]stmtInfo{}
	}
	t.remember('P', false, name)
	t.prepared[name] = info
}

// remember queues op, with what it is about to change, when exact.
func (t *tracker) remember(op byte, portal bool, name string) {
	if !t.exact {
		return
	}
	m := t.prepared
	if portal {
		m = t.portals
	}
	old, had := m[name]
	t.queue.push(trackItem{op: op, undo: undoEntry{portal: portal, name: name, old: old, had: had}})
}

// describe records a Describe (exact trackers only: its answer is counted).
func (t *tracker) describe() {
	if t.exact {
		t.queue.push(trackItem{op: 'D'})
	}
}

// answered records the backend's answer to a Parse ('P', ParseComplete),
// Bind ('B'), Close ('C') or Describe ('D', RowDescription or NoData).
// Anything else at the queue's front (a RowDescription of a simple Query)
// is left alone.
func (t *tracker) answered(op byte) {
	if t.exact && t.queue.len() > 0 && t.queue.front().op == op {
		t.queue.pop()
	}
}

// takeBack undoes what a Parse, Bind or Close changed.
func (t *tracker) takeBack(u undoEntry) {
	m := t.prepared
	if u.portal {
		m = t.portals
	}
	if u.had {
		m[u.name] = u.old
	} else {
		delete(m, u.name)
	}
}

// markRisky notes that prepared statement name may change how the backend
// reads statement text.
func (t *tracker) markRisky(name string) {
	if info, ok := t.prepared[name]; ok {
		info.risky = true
		t.prepared[name] = info
	}
}

// bind records a Bind of a prepared statement to a portal.
func (t *tracker) bind(portal, stmt string) {
	if t.portals == nil {
		t.portals = map[string]stmtInfo{}
	}
	t.remember('B', true, portal)
	t.portals[portal] = t.prepared[stmt]
}

// execute records an Execute of a portal.
func (t *tracker) execute(portal string) {
	t.queue.push(trackItem{stmt: t.portals[portal]})
}

// close records a Close of a statement ('S') or portal ('P').
func (t *tracker) close(kind byte, name string) {
	t.remember('C', kind != 'S', name)
	if kind == 'S' {
		delete(t.prepared, name)
	} else {
		delete(t.portals, name)
	}
}

// sync records a Sync.
func (t *tracker) sync() {
	t.queue.push(trackItem{sync: true})
	delete(t.portals, "") // the unnamed portal ends with the transaction at the latest
}

// popStmt takes the oldest statement awaiting a result, if the next item is
// one. Parse, Bind, Close and Describe items still before it were answered
// (a statement's result comes after theirs): they are dropped.
func (t *tracker) popStmt() (stmtInfo, bool) {
	for t.queue.len() > 0 && t.queue.front().op != 0 {
		t.queue.pop()
	}
	if t.queue.len() == 0 || t.queue.front().sync {
		return stmtInfo{}, false
	}
	return t.queue.pop().stmt, true
}

// commandComplete records a statement's success; tag is the command tag.
func (t *tracker) commandComplete(tag []byte) {
	s, ok := t.popStmt()
	if !ok {
		return
	}
	switch s.kind {
	case classify.DDL:
		if s.noTxn {
			// Committed now, whatever fails after it before Sync.
			t.committed = append(t.committed, s.text)
			return
		}
		t.txDDL = append(t.txDDL, s.text)
	case classify.DML:
		if changedRows(tag) {
			if t.txWrites == 0 {
				t.writeTag = string(tag)
			}
			t.txWrites++
		}
	case classify.Commit:
		if bytes.HasPrefix(tag, []byte("ROLLBACK")) { // COMMIT of an aborted transaction
			t.discard()
			return
		}
		t.commitTx()
	case classify.Rollback, classify.PrepareTxn:
		t.discard()
	case classify.Savepoint:
		t.marks = append(t.marks, savepointMark{name: s.savepoint, n: len(t.txDDL), w: t.txWrites})
	case classify.RollbackTo:
		for i := len(t.marks) - 1; i >= 0; i-- {
			if t.marks[i].name == s.savepoint {
				t.txDDL = t.txDDL[:t.marks[i].n]
				if t.txWrites = t.marks[i].w; t.txWrites == 0 {
					t.writeTag = ""
				}
				t.marks = t.marks[:i+1]
				break
			}
		}
		t.failed = false
	case classify.Release:
		for i := len(t.marks) - 1; i >= 0; i-- {
			if t.marks[i].name == s.savepoint {
				t.marks = t.marks[:i]
				break
			}
		}
	}
}

// emptyQuery, portalSuspended: a statement ended without completing.
func (t *tracker) emptyQuery() { t.popStmt() }

func (t *tracker) portalSuspended() { t.popStmt() }

// errorResponse records an error: the statement failed and the current
// transaction (implicit or explicit) will not commit what it did.
func (t *tracker) errorResponse() {
	t.failed = true
	if !t.exact || t.queue.len() == 0 || t.queue.front().op == 0 {
		t.popStmt()
		t.skipRest()
		return
	}
	// The message at the front failed.
	it := t.queue.pop()
	switch {
	case it.op == 'P' && it.undo.name == "":
		delete(t.prepared, "") // a Parse drops the unnamed statement before it parses
	case it.op != 'D':
		t.takeBack(it.undo)
	}
	t.skipRest()
}

// skipRest takes back the Parse, Bind and Close messages of the batch after
// the one that failed: the backend skips them, up to the batch's Sync.
func (t *tracker) skipRest() {
	if !t.exact {
		return
	}
	items := t.queue.items()
	end := 0
	for end < len(items) && !items[end].sync {
		end++
	}
	for i := end - 1; i >= 0; i-- {
		if op := items[i].op; op == 'P' || op == 'B' || op == 'C' {
			t.takeBack(items[i].undo)
			items[i].op = 'D' // taken back: not again at a later error
		}
	}
}

// readyForQuery ends a batch and returns the DDL that committed with it.
func (t *tracker) readyForQuery(status byte) []string {
	for t.queue.len() > 0 {
		if t.queue.pop().sync {
			break
		}
	}
	if status == 'I' {
		if !t.failed {
			t.commitTx()
		}
		t.discard()
	}
	out := t.committed
	t.committed = nil
	return out
}

// takeCommitted returns, and forgets, the DDL that committed outside a
// ReadyForQuery of the client's (with the proxy's own COMMIT).
func (t *tracker) takeCommitted() []string {
	out := t.committed
	t.committed = nil
	return out
}

func (t *tracker) discard() {
	t.txDDL, t.marks, t.failed = nil, nil, false
	t.txWrites, t.writeTag = 0, ""
}

// commitTx records that the current transaction committed.
func (t *tracker) commitTx() {
	if len(t.txDDL) > 0 && t.txWrites > 0 {
		if t.writes == 0 {
			t.firstWrite = t.writeTag
		}
		t.writes += t.txWrites
	}
	t.committed = append(t.committed, t.txDDL...)
	t.txDDL, t.marks = nil, nil
	t.txWrites, t.writeTag = 0, ""
}

// takeWrites returns, and forgets, how many statements changed rows in the
// transactions whose DDL readyForQuery handed out, and the first one's tag.
func (t *tracker) takeWrites() (int, string) {
	n, tag := t.writes, t.firstWrite
	t.writes, t.firstWrite = 0, ""
	return n, tag
}

// changedRows reports whether a command tag is a data change of one row or
// more (INSERT 0 3, UPDATE 2, DELETE 1, MERGE 4).
func changedRows(tag []byte) bool {
	for _, w := range [...]string{"INSERT ", "UPDATE ", "DELETE ", "MERGE "} {
		if bytes.HasPrefix(tag, []byte(w)) {
			return !bytes.HasSuffix(tag, []byte(" 0"))
		}
	}
	return false
}
