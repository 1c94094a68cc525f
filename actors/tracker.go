package actors

import (
	"bytes"
	"cmp"

	"tdb/fsm"
	"tdb/wire/classify"
)

// stmtInfo is what the proxy knows of a statement the client sent.
type stmtInfo struct {
	text string
	// raw is the whole text of the Parse, as the query log shows it (text
	// is the one statement in it, without leading comments).
	raw  string
	kind classify.Kind
	// name is the savepoint a SAVEPOINT, RELEASE or ROLLBACK TO names, or
	// the prepared statement a DEALLOCATE names
	name string
	// risky: it may change how the backend reads statement text
	// (mayChangeSettings)
	risky bool
	// atOnce: it cannot run in a transaction block (CREATE INDEX
	// CONCURRENTLY), so it commits when it completes
	atOnce bool
}

// commitsAtOnce reports whether a statement commits when it completes,
// whatever happens after it: one PostgreSQL refuses in a transaction block.
// ALTER TYPE … ADD VALUE is marked NoTxn for servers before 12; from 12 on
// it runs in transactions, and commits or rolls back with them.
func commitsAtOnce(st *classify.Statement) bool {
	return st.NoTxn && st.Tag != "ALTER TYPE"
}

// trackItem is one entry of the tracker's queue: a statement awaiting its
// result, the end of a batch (a simple Query or a Sync) awaiting
// ReadyForQuery, or a Parse, Bind, Close or Describe awaiting its answer.
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
	// txMayWrite: a statement of the current transaction that completed
	// may have written without its tag saying so (a SELECT calling a
	// function, DO, CALL); the session notes it with a row limit set.
	txMayWrite bool
	// writes and firstWrite: those of the transactions whose DDL
	// committed, handed out with it (takeWrites).
	writes     int
	firstWrite string
	marks      []savepointMark
	failed     bool // an error happened in the current transaction
	// committed: the DDL of each transaction that committed (a statement
	// that commits at once is one of its own), in order, handed out at
	// ReadyForQuery: each is a blueprint version, since a version runs in
	// one transaction and may need the one before committed (an enum value
	// added before a column defaults to it).
	committed []captured
	// settings are the session's settings a blueprint version carries, as
	// the backend last reported them; txSettings those the current
	// transaction's first DDL ran with.
	settings   fsm.SessionSettings
	txSettings fsm.SessionSettings
	// rfqSettings are the settings as of the last ReadyForQuery, and
	// txTouched says they changed in the transaction now open: its end (or
	// a ROLLBACK TO) may give them back their earlier values.
	rfqSettings fsm.SessionSettings
	txTouched   bool
	// skipping: an error ended the extended-protocol batch the client is
	// still sending; the backend ignores its messages up to its Sync.
	skipping bool
	// noticeID is the capture id the workspace's DDL journal gave the DDL
	// statement awaiting its result (journalNotice); txID that of the
	// current transaction's DDL.
	noticeID, txID string
}

// captured is the DDL of one transaction that committed, and the settings
// it ran with: a blueprint version.
type captured struct {
	ddl      []string
	settings fsm.SessionSettings
	// id is the capture id the workspace's DDL journal holds the
	// transaction's DDL under, "" where it keeps none (backend/journal.go).
	id string
}

// journalNotice takes the capture id the workspace's DDL journal sent for
// the DDL statement now running. A notice that comes while no DDL
// statement awaits its result (a function of the client's raising one
// with that code) is not the journal's, and is ignored.
func (t *tracker) journalNotice(id string) {
	if st, ok := t.failing(); ok && st.kind == classify.DDL {
		t.noticeID = id
	}
}

// setting records a setting the backend reported; only those a blueprint
// version carries are kept.
func (t *tracker) setting(name, value string) {
	switch name {
	case "TimeZone":
		t.settings.TimeZone = value
	case "DateStyle":
		t.settings.DateStyle = value
	case "IntervalStyle":
		t.settings.IntervalStyle = value
	}
}

// settingsKnown takes the settings reported so far as those the session
// starts with.
func (t *tracker) settingsKnown() {
	t.rfqSettings = t.settings
}

// settingsChanged reports whether the current transaction holds DDL that
// ran with other settings than the session has now.
func (t *tracker) settingsChanged() bool {
	return len(t.txDDL) > 0 && t.txSettings != t.settings
}

func newTracker() *tracker {
	return &tracker{} // its maps are made at their first entry
}

// query records a simple-protocol Query and its statements.
func (t *tracker) query(r classify.Result) {
	if t.skipping {
		return // the backend ignores it until the batch's Sync (the relay refuses it first)
	}
	for _, s := range r.Statements {
		t.queue.push(trackItem{stmt: stmtInfo{text: s.Text, kind: s.Kind, name: cmp.Or(s.Savepoint, s.Deallocate), atOnce: commitsAtOnce(&s)}})
	}
	t.queue.push(trackItem{sync: true})
}

// inFlight reports whether a statement awaiting its result begins a
// transaction, whether one may write, and whether one may return rows
// (effects).
func (t *tracker) inFlight(own *classify.Functions) (begins, writes, rows bool) {
	for _, it := range t.queue.items() {
		if it.sync || it.op != 0 {
			continue
		}
		w, r := effects(it.stmt.kind, it.stmt.text, own)
		begins, writes, rows = begins || it.stmt.kind == classify.Begin, writes || w, rows || r
	}
	return begins, writes, rows
}

// parse records an extended-protocol Parse.
func (t *tracker) parse(name, sql string, r classify.Result) {
	info := stmtInfo{raw: sql}
	if len(r.Statements) == 1 {
		st := &r.Statements[0]
		info = stmtInfo{text: st.Text, raw: sql, kind: st.Kind, name: cmp.Or(st.Savepoint, st.Deallocate), atOnce: commitsAtOnce(st)}
	}
	if t.skipping {
		return // the backend skips it
	}
	if t.prepared == nil {
		t.prepared = map[string]stmtInfo{}
	}
	t.remember('P', false, name)
	t.prepared[name] = info
}

// remember queues op, with what it is about to change. Each Parse, Bind
// and Close is followed to its answer, and those the backend refused or
// skipped after an error in their batch (it skips everything up to Sync)
// are taken back: a statement name the backend still holds must not be
// forgotten (DDL capture) nor read as the text of a Parse that failed (the
// row guard, the settings checks).
func (t *tracker) remember(op byte, portal bool, name string) {
	m := t.prepared
	if portal {
		m = t.portals
	}
	old, had := m[name]
	t.queue.push(trackItem{op: op, undo: undoEntry{portal: portal, name: name, old: old, had: had}})
}

// describe records a Describe, whose answer is counted.
func (t *tracker) describe() {
	if !t.skipping {
		t.queue.push(trackItem{op: 'D'})
	}
}

// answered records the backend's answer to a Parse ('P', ParseComplete),
// Bind ('B'), Close ('C') or Describe ('D', RowDescription or NoData).
// Anything else at the queue's front (a RowDescription of a simple Query)
// is left alone.
func (t *tracker) answered(op byte) {
	if t.queue.len() > 0 && t.queue.front().op == op {
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
	if t.skipping {
		return
	}
	if t.portals == nil {
		t.portals = map[string]stmtInfo{}
	}
	t.remember('B', true, portal)
	t.portals[portal] = boundStmt(t.prepared, stmt)
}

// execute records an Execute of a portal.
func (t *tracker) execute(portal string) {
	t.queue.push(trackItem{stmt: t.portals[portal]})
}

// close records a Close of a statement ('S') or portal ('P').
func (t *tracker) close(kind byte, name string) {
	if t.skipping {
		return
	}
	t.remember('C', kind != 'S', name)
	if kind == 'S' {
		delete(t.prepared, name)
	} else {
		delete(t.portals, name)
	}
}

// sync records a Sync.
func (t *tracker) sync() {
	t.skipping = false
	// The unnamed portal stays: in a transaction block it outlives the
	// Sync, and an Execute in a later batch runs it. It ends with the
	// transaction (commandComplete, txEnded) or the next Bind of it.
	t.queue.push(trackItem{sync: true})
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

// awaitsStatement reports whether a statement sent awaits its result: none
// does while an error has the backend skip the rest of an unsynced batch.
func (t *tracker) awaitsStatement() bool {
	if t.skipping {
		return false
	}
	for _, it := range t.queue.items() {
		if it.op == 0 && !it.sync {
			return true
		}
	}
	return false
}

// commandComplete records a statement's success; tag is the command tag.
func (t *tracker) commandComplete(tag []byte) (stmtInfo, bool) {
	s, ok := t.popStmt()
	if !ok {
		return s, false
	}
	switch s.kind {
	case classify.DDL:
		id := t.noticeID
		t.noticeID = ""
		if s.atOnce {
			// Committed now, whatever fails after it before Sync.
			t.committed = append(t.committed, captured{[]string{s.text}, t.settings, id})
			return s, true
		}
		if len(t.txDDL) == 0 {
			t.txSettings = t.settings
		}
		t.txDDL = append(t.txDDL, s.text)
		t.txID = cmp.Or(t.txID, id)
	case classify.DML:
		if changedRows(tag) {
			if t.txWrites == 0 {
				t.writeTag = string(tag)
			}
			t.txWrites++
		}
	case classify.Commit:
		// The transaction's portals end with it.
		t.forget(true, "", true)
		if bytes.HasPrefix(tag, []byte("ROLLBACK")) { // COMMIT of an aborted transaction
			t.discard()
			return s, true
		}
		t.commitTx()
	case classify.Rollback, classify.PrepareTxn:
		t.forget(true, "", true)
		t.discard()
	case classify.Savepoint:
		t.marks = append(t.marks, savepointMark{name: s.name, n: len(t.txDDL), w: t.txWrites})
	case classify.RollbackTo:
		for i := len(t.marks) - 1; i >= 0; i-- {
			if t.marks[i].name == s.name {
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
			if t.marks[i].name == s.name {
				t.marks = t.marks[:i]
				break
			}
		}
	case classify.Other:
		// Prepared statements the backend dropped (for good: DEALLOCATE is
		// not undone by a rollback), whatever protocol made them.
		switch string(tag) {
		case "DEALLOCATE":
			t.forget(false, s.name, false)
		case "DEALLOCATE ALL", "DISCARD ALL":
			t.forget(false, "", true)
		}
	}
	return s, true
}

// emptyQuery, portalSuspended: a statement ended without completing.
func (t *tracker) emptyQuery() { t.popStmt() }

func (t *tracker) portalSuspended() (stmtInfo, bool) { return t.popStmt() }

// failing returns the statement an error answers when it comes now: the
// oldest awaiting a result, when nothing else (a Parse or Bind) is before it.
func (t *tracker) failing() (stmtInfo, bool) {
	if t.queue.len() == 0 {
		return stmtInfo{}, false
	}
	if it := t.queue.front(); it.op == 0 && !it.sync {
		return it.stmt, true
	}
	return stmtInfo{}, false
}

// errorResponse records an error: the statement failed and the current
// transaction (implicit or explicit) will not commit what it did.
func (t *tracker) errorResponse() {
	t.failed = true
	// An error that answers none of the client's messages (a FATAL at
	// idle) leaves no batch to skip.
	inBatch := t.queue.len() > 0 && !t.queue.front().sync
	if !inBatch || t.queue.front().op == 0 {
		t.popStmt()
		t.skipRest(inBatch)
		return
	}
	// The message at the front failed.
	it := t.queue.pop()
	if it.op != 'D' && !t.overridden(it.undo) {
		if it.op == 'P' && it.undo.name == "" {
			delete(t.prepared, "") // a Parse drops the unnamed statement before it parses
		} else {
			t.takeBack(it.undo)
		}
	}
	t.skipRest(true)
}

// skipRest takes back the Parse, Bind and Close messages of the batch after
// the one that failed: the backend skips them, up to the batch's Sync. When
// that Sync is not sent yet, the messages still to come are skipped too.
func (t *tracker) skipRest(inBatch bool) {
	items := t.queue.items()
	end := batchEnd(items)
	t.skipping = inBatch && end == len(items)
	for i := end - 1; i >= 0; i-- {
		if op := items[i].op; op == 'P' || op == 'B' || op == 'C' {
			if !t.overridden(items[i].undo) {
				t.takeBack(items[i].undo)
			}
			items[i].op = 'D' // taken back: not again at a later error
		}
	}
}

// overridden reports whether a later batch, already sent, sets the name
// that u is about to restore: its value stands. What u would restore is
// what the backend still holds before that batch, so it becomes what the
// later message restores in turn if the backend refuses or skips it (a
// Parse of a name the skipped Close did not free fails).
func (t *tracker) overridden(u undoEntry) bool {
	items := t.queue.items()
	for i := batchEnd(items); i < len(items); i++ {
		if op := items[i].op; (op == 'P' || op == 'B' || op == 'C') && items[i].undo.portal == u.portal && items[i].undo.name == u.name {
			items[i].undo.old, items[i].undo.had = u.old, u.had
			return true
		}
	}
	return false
}

// batchEnd is the index of the first batch's sync item in items, or
// len(items) when its Sync is not sent yet.
func batchEnd(items []trackItem) int {
	for i := range items {
		if items[i].sync {
			return i
		}
	}
	return len(items)
}

// readyForQuery ends a batch and returns the DDL that committed with it,
// one list per transaction.
func (t *tracker) readyForQuery(status byte) []captured {
	if status == 'I' {
		t.txTouched = false
	} else if t.settings != t.rfqSettings {
		t.txTouched = true
	}
	t.rfqSettings = t.settings
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
		t.txEnded()
	}
	return t.takeCommitted()
}

// txEnded forgets the portals of the transaction that ended: PostgreSQL
// drops every portal a Bind made at its transaction's end, so a client that
// binds a new name in each batch must not grow the session's map. A COMMIT,
// ROLLBACK or PREPARE TRANSACTION forgets them as it completes (the
// backend dropped them before it answered), so a client that never goes
// idle (COMMIT; BEGIN) does not grow it either.
func (t *tracker) txEnded() { t.forget(true, "", true) }

// forget drops what the backend no longer holds, once the message that
// dropped it is answered: the portal (portal) or prepared statement name,
// or all of them. Those that messages already sent behind it set stay, and
// what their first such message would restore if the backend skips it is
// now nothing of that name.
func (t *tracker) forget(portal bool, name string, all bool) {
	m := t.prepared
	if portal {
		m = t.portals
	}
	if len(m) == 0 {
		return
	}
	items := t.queue.items()
	sets := func(it *trackItem) bool {
		return (it.op == 'P' || it.op == 'B' || it.op == 'C') && it.undo.portal == portal && (all || it.undo.name == name)
	}
	first := -1
	for i := range items {
		if sets(&items[i]) {
			first = i
			break
		}
	}
	if first < 0 {
		// Nothing sent behind sets one (a round trip): no map to build.
		if all {
			clear(m)
		} else {
			delete(m, name)
		}
		return
	}
	later := map[string]bool{}
	for i := first; i < len(items); i++ {
		if u := &items[i].undo; sets(&items[i]) && !later[u.name] {
			later[u.name] = true
			u.old, u.had = stmtInfo{}, false
		}
	}
	if !all {
		if !later[name] {
			delete(m, name)
		}
		return
	}
	for n := range m {
		if !later[n] {
			delete(m, n)
		}
	}
}

// takeCommitted returns, and forgets, the DDL that committed: at a
// ReadyForQuery of the client's, or with the proxy's own COMMIT.
func (t *tracker) takeCommitted() []captured {
	out := t.committed
	t.committed = nil
	return out
}

func (t *tracker) discard() {
	t.txDDL, t.marks, t.failed = nil, nil, false
	t.noticeID, t.txID = "", ""
	t.txWrites, t.writeTag, t.txMayWrite = 0, "", false
}

// commitTx records that the current transaction committed.
func (t *tracker) commitTx() {
	if len(t.txDDL) > 0 && t.txWrites > 0 {
		if t.writes == 0 {
			t.firstWrite = t.writeTag
		}
		t.writes += t.txWrites
	}
	if len(t.txDDL) > 0 {
		t.committed = append(t.committed, captured{t.txDDL, t.txSettings, t.txID})
	}
	t.txDDL, t.marks, t.noticeID, t.txID = nil, nil, "", ""
	t.txWrites, t.writeTag, t.txMayWrite = 0, "", false
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
