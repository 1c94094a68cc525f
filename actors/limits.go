package actors

import (
	"bytes"
	"time"

	"tdb/wire"
	"tdb/wire/classify"
)

// stmtLimits are a workspace's per-statement settings as they stood when a
// statement was sent: new values apply to new statements.
type stmtLimits struct {
	maxRows   int64 // max_rows_per_query; 0 = off
	timeoutMs int64 // query_timeout_ms; 0 = off
	// own are the function names the workspace's blueprint defines, read
	// only with a row limit (the row guard's; nil: none).
	own *classify.Functions
}

// stmtRun is one statement execution as the limits and the query log see it:
// a statement of a simple Query, or an extended-protocol portal from its
// first Execute to its CommandComplete. PortalSuspended does not end a run:
// rows fetched in batches (JDBC fetch size) count together.
type stmtRun struct {
	text    string
	rows    int64         // DataRows so far
	started time.Time     // first began executing; zero until then
	active  time.Duration // time spent executing (suspensions excluded)
	// query marks a simple Query's statement: no portal holds its run, so
	// the run is reused once it has finished.
	query bool
	// batch counts the batches the client had sent when the portal was
	// bound: it ends with its transaction at the latest. bound counts the
	// Binds sent up to its own (up to its Query, for a Query's statement).
	batch, bound uint64
}

// limitItem is one entry of the limiter's queue: a statement execution
// awaiting its end, or the end of a batch (Query or Sync) awaiting
// ReadyForQuery.
type limitItem struct {
	sync  bool
	run   *stmtRun
	lim   stmtLimits
	first bool // this execution began its run
}

// stmtDone is a finished statement execution, for the query log.
type stmtDone struct {
	text     string
	start    time.Time
	duration time.Duration
	rows     int64
	sqlstate string
}

// relayAction is what the backend pump does with a frame.
type relayAction struct {
	drop   bool   // do not forward the frame
	out    []byte // complete frames to send in its place (implies drop)
	cancel string // cancel the running statement on the backend, for this limit
	end    bool   // end the session once out is written (the backend session is not reused)
}

// Limits whose enforcement cancels a statement on the backend.
const (
	limitRows    = "max_rows_per_query"
	limitTimeout = "query_timeout_ms"
)

// limiter is the synchronous core of per-statement enforcement
// (max_rows_per_query, query_timeout_ms) and of the query log for one
// session. Like the tracker it follows the statements the client sent
// through the backend's answers; client-side methods are called by the client
// pump, backend-side ones by the backend pump, in protocol order, serialized
// by the session's lock. It decides; the session acts (cancels, timers,
// writes).
type limiter struct {
	queue   fifo[limitItem]
	portals map[string]*stmtRun // portal name -> its run (possibly suspended)
	now     func() time.Time    // the session's clock

	headStarted bool      // the head item is executing
	headSince   time.Time // when it began
	gen         uint64    // counts executions begun; names the head for its timer

	// timeoutMs is set when the head was cancelled for query_timeout_ms: the
	// next 57014 of the batch is rewritten to say so.
	timeoutMs int64
	// overRows is set when a statement passed max_rows_per_query: the rest of
	// the batch is discarded up to ReadyForQuery; overPending until the 54000
	// error has taken the place of the statement's end.
	overRows    int64
	overPending bool
	// leftRun is the statement the backend ran when the proxy cancelled it
	// because the client left: the 57014 that cancel brings it is logged
	// as the session's end (08006), as when the session ends first, not as
	// a cancel the client asked for. Statements after it keep their codes.
	leftRun *stmtRun

	done []stmtDone // finished statements not yet collected

	spare []*stmtRun // finished runs of simple Queries' statements, for reuse

	// syncs counts the batches the client sent (their Query or Sync), ended
	// those whose ReadyForQuery came; binds the Binds it sent.
	syncs, ended, binds uint64
}

// maxSpareRuns bounds the runs a limiter keeps for reuse: a Query of many
// statements does not leave as many behind.
const maxSpareRuns = 4

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now} // its maps are made at their first entry
}

// query records a simple-protocol Query: one execution per statement (the
// whole text when it could not be split).
func (l *limiter) query(sql string, stmts []string, lim stmtLimits) {
	if len(stmts) == 0 {
		stmts = []string{sql}
	}
	for _, s := range stmts {
		l.push(limitItem{run: l.queryRun(s), lim: lim})
	}
	l.push(limitItem{sync: true})
}

// queryRun returns a run for a simple Query's statement, reusing one that
// has finished: a plain statement's round trip allocates nothing here.
func (l *limiter) queryRun(text string) *stmtRun {
	r := l.spareRun()
	*r = stmtRun{text: text, query: true, bound: l.binds}
	return r
}

// bind records a Bind of a statement whose text is text (as the tracker
// knows what the backend holds under the statement's name): a new portal,
// and so a new run (the old one of that name, if it ran, ends unfinished).
func (l *limiter) bind(portal, text string) {
	l.abandon(portal)
	l.binds++
	if r := l.portals[portal]; r != nil && !l.queued(r) {
		*r = stmtRun{text: text, batch: l.syncs, bound: l.binds} // the old run is over: reuse it
		return
	}
	if l.portals == nil {
		l.portals = map[string]*stmtRun{}
	}
	r := l.spareRun()
	*r = stmtRun{text: text, batch: l.syncs, bound: l.binds}
	l.portals[portal] = r
}

// spareRun returns a finished run to reuse, or a new one.
func (l *limiter) spareRun() *stmtRun {
	if n := len(l.spare); n > 0 {
		r := l.spare[n-1]
		l.spare = l.spare[:n-1]
		return r
	}
	return &stmtRun{}
}

// execute records an Execute of a portal.
func (l *limiter) execute(portal string, lim stmtLimits) {
	r := l.portals[portal]
	if r == nil { // unknown portal: the backend will say so
		r = &stmtRun{}
	}
	l.push(limitItem{run: r, lim: lim})
}

// close records a Close of a statement ('S', nothing to do here) or
// portal ('P').
func (l *limiter) close(kind byte, name string) {
	if kind == 'S' {
		return
	}
	l.abandon(name)
	delete(l.portals, name)
}

// sync records a Sync.
func (l *limiter) sync() { l.push(limitItem{sync: true}) }

func (l *limiter) push(it limitItem) {
	if it.sync {
		l.syncs++
	}
	l.queue.push(it)
	l.startHead()
}

// startHead notes that the head statement began executing, now, if it had
// not: the backend runs statements one after another.
func (l *limiter) startHead() {
	if l.headStarted || l.queue.len() == 0 || l.queue.front().sync {
		return
	}
	l.headStarted, l.headSince = true, l.now()
	l.gen++
	if r := l.queue.front().run; r.started.IsZero() {
		r.started = l.headSince
		l.queue.front().first = true
	}
}

// pop removes the head item; for a statement, its run's executing time so far
// is added up.
func (l *limiter) pop() (limitItem, bool) {
	if l.queue.len() == 0 {
		return limitItem{}, false
	}
	it := l.queue.pop()
	if !it.sync && l.headStarted {
		it.run.active += l.now().Sub(l.headSince)
	}
	l.headStarted = false
	return it, true
}

// popStmt pops the head if it is a statement.
func (l *limiter) popStmt() (limitItem, bool) {
	if l.queue.len() == 0 || l.queue.front().sync {
		return limitItem{}, false
	}
	return l.pop()
}

// finish logs a run's end and starts the next statement. A completed run
// starts over if its portal is executed again; one stopped past the row limit
// while its portal is suspended keeps its count.
func (l *limiter) finish(r *stmtRun, sqlstate string, rows int64, completed bool) {
	l.done = append(l.done, stmtDone{
		text: r.text, start: r.started, duration: r.active,
		rows: rows, sqlstate: sqlstate,
	})
	r.started, r.active = time.Time{}, 0
	if completed {
		r.rows = 0
	}
	if r == l.leftRun {
		l.leftRun = nil // however it ended: its run may be reused
	}
	if r.query && len(l.spare) < maxSpareRuns { // popped, and nothing else holds it
		l.spare = append(l.spare, r)
	}
	l.startHead()
}

// abandon logs a portal's run that executed but never completed (closed,
// rebound, or ended with its transaction while suspended).
func (l *limiter) abandon(portal string) {
	r := l.portals[portal]
	if r == nil || r.started.IsZero() || l.queued(r) {
		return
	}
	l.done = append(l.done, stmtDone{text: r.text, start: r.started, duration: r.active, rows: r.rows, sqlstate: "00000"})
	r.started, r.active = time.Time{}, 0
}

// running returns the run of the statement executing now, or nil.
func (l *limiter) running() *stmtRun {
	if !l.headStarted || l.queue.len() == 0 || l.queue.front().sync {
		return nil
	}
	return l.queue.front().run
}

// clientLeft notes that the proxy cancels the statement the backend runs
// because the client left (see leftRun).
func (l *limiter) clientLeft() {
	if r := l.running(); r != nil {
		l.leftRun = r
	}
}

// sessionEnded logs, when the session ends, the runs that began and never
// ended: the statement executing when the client left or the backend
// connection went (its outcome is unknown to the proxy: 08006, with the
// rows relayed so far), and suspended portals (as abandon does). The
// statements queued behind it never ran.
func (l *limiter) sessionEnded() {
	r := l.running()
	var rows int64
	if r != nil {
		rows = r.rows
		if l.overRows > 0 {
			rows = min(rows, l.overRows) // the rows the client got
		}
		l.pop() // adds the time it executed
	}
	for l.queue.len() > 0 {
		l.queue.pop()
	}
	l.headStarted = false
	if r != nil {
		l.finish(r, sqlstateLost, rows, true) // the queue is empty: nothing starts after it
	}
	for name := range l.portals {
		l.abandon(name)
	}
}

// sqlstateLost is the query log's SQLSTATE for a statement whose session
// ended before it did (connection_failure).
const sqlstateLost = "08006"

// queued reports whether an execution of r still awaits its end.
func (l *limiter) queued(r *stmtRun) bool {
	for _, it := range l.queue.items() {
		if it.run == r {
			return true
		}
	}
	return false
}

// dataRow counts a row of the head statement. Past max_rows_per_query the
// rest of the batch is discarded and the statement cancelled.
func (l *limiter) dataRow() relayAction {
	if l.overRows > 0 {
		return relayAction{drop: true}
	}
	if l.queue.len() == 0 || l.queue.front().sync {
		return relayAction{}
	}
	it := *l.queue.front()
	it.run.rows++
	if it.lim.maxRows > 0 && it.run.rows > it.lim.maxRows {
		l.overRows, l.overPending = it.lim.maxRows, true
		return relayAction{drop: true, cancel: limitRows}
	}
	return relayAction{}
}

// overError is the error that ends a statement past max_rows_per_query.
func (l *limiter) overError() []byte {
	return wire.AppendErrorResponse(nil, wire.NewError("ERROR", "54000",
		"query returned more than max_rows_per_query (%d) rows", l.overRows))
}

// endOver ends the statement that passed the row limit with the 54000 error.
func (l *limiter) endOver(it limitItem, ok, completed bool) relayAction {
	l.overPending = false
	if ok {
		l.finish(it.run, "54000", min(it.run.rows, l.overRows), completed) // the rows the client got
	}
	return relayAction{drop: true, out: l.overError()}
}

// commandComplete ends the head statement successfully.
func (l *limiter) commandComplete(tag []byte) relayAction {
	it, ok := l.popStmt()
	if l.overPending {
		return l.endOver(it, ok, true)
	}
	if ok {
		l.finish(it.run, "00000", max(it.run.rows, tagRows(tag)), true)
	}
	return relayAction{drop: l.overRows > 0}
}

// errorResponse ends the head statement with an error. FATAL errors always
// reach the client; a 57014 after a query_timeout_ms cancel says so.
func (l *limiter) errorResponse(severity, code string) relayAction {
	it, ok := l.popStmt()
	fatal := severity == "FATAL" || severity == "PANIC"
	if l.overPending && !fatal {
		return l.endOver(it, ok, true)
	}
	act := relayAction{drop: l.overRows > 0 && !fatal}
	if code == "57014" && l.timeoutMs > 0 && !act.drop {
		act.out = wire.AppendErrorResponse(nil, wire.NewError("ERROR", "57014",
			"canceling statement due to query_timeout_ms (%d ms)", l.timeoutMs))
		act.drop = true
		l.timeoutMs = 0
	}
	if ok {
		if code == "57014" && it.run == l.leftRun {
			code = sqlstateLost
		}
		l.finish(it.run, code, it.run.rows, true)
	}
	return act
}

// emptyQuery ends the head statement (an empty query string).
func (l *limiter) emptyQuery() relayAction {
	if _, ok := l.popStmt(); ok {
		l.startHead()
	}
	return relayAction{drop: l.overRows > 0}
}

// portalSuspended ends an Execute that reached its row count; the run goes on.
func (l *limiter) portalSuspended() relayAction {
	it, ok := l.popStmt()
	if l.overPending {
		return l.endOver(it, ok, false)
	}
	l.startHead()
	return relayAction{drop: l.overRows > 0}
}

// readyForQuery ends a batch. A batch that passed the row limit without its
// statement ending (which the backend does not do) still gets the error.
func (l *limiter) readyForQuery(status byte) relayAction {
	for {
		it, ok := l.pop()
		if !ok {
			break
		}
		if it.sync {
			l.ended++
			break
		}
		if it.first { // skipped after an error: it never ran
			it.run.started, it.run.active = time.Time{}, 0
		}
	}
	var act relayAction
	if l.overPending {
		act.out = l.overError()
	}
	l.overRows, l.overPending, l.timeoutMs = 0, false, 0
	if status == 'I' {
		l.txEnded()
	}
	l.startHead()
	return act
}

// txEnded notes that the transaction ended, and with it every portal bound
// in the batches that have ended; those bound behind them, already sent,
// stay.
func (l *limiter) txEnded() {
	for name, r := range l.portals {
		if r.batch < l.ended {
			l.dropPortal(name, r)
		}
	}
}

// headEndsTx notes that the head statement, completing now, ended its
// transaction (COMMIT, ROLLBACK, PREPARE TRANSACTION), which drops every
// portal bound before it was sent: a session that never goes idle
// (COMMIT; BEGIN) forgets them too. Those bound behind it stay, and so do
// those an Execute already sent still awaits (the backend will say they
// are gone).
func (l *limiter) headEndsTx() {
	if len(l.portals) == 0 || l.queue.len() == 0 || l.queue.front().sync {
		return
	}
	// The Binds sent before the head: its own Bind's count for a portal
	// (those sent between its Bind and its Execute stay too, on the safe
	// side), the count at its Query for a Query's statement.
	binds := l.queue.front().run.bound
	for name, r := range l.portals {
		if r.bound <= binds && !l.queued(r) {
			l.dropPortal(name, r)
		}
	}
}

// dropPortal forgets a portal the backend dropped, logging its run if it
// was suspended.
func (l *limiter) dropPortal(name string, r *stmtRun) {
	l.abandon(name)
	delete(l.portals, name)
	// A run no Execute already sent holds is reused (a prepared
	// statement's round trip binds a portal each time).
	if len(l.spare) < maxSpareRuns && !l.queued(r) {
		l.spare = append(l.spare, r)
	}
}

// other decides on backend messages that neither count nor end statements:
// discarded with the rest of a batch past the row limit, except those that
// are not part of the batch's results.
func (l *limiter) other(typ byte) relayAction {
	if l.overRows == 0 {
		return relayAction{}
	}
	switch typ {
	case 'S', 'A', 'K': // ParameterStatus, NotificationResponse: session state, not results
		return relayAction{}
	}
	return relayAction{drop: true}
}

// deadline returns when the head statement's query_timeout_ms expires, and
// the generation naming that execution.
func (l *limiter) deadline() (gen uint64, at time.Time, ok bool) {
	if !l.headStarted || l.queue.len() == 0 || l.queue.front().lim.timeoutMs <= 0 {
		return 0, time.Time{}, false
	}
	ms := l.queue.front().lim.timeoutMs
	return l.gen, l.headSince.Add(time.Duration(ms) * time.Millisecond), true
}

// expire is called when the timer of execution gen fires. It reports whether
// the statement should be cancelled on the backend.
func (l *limiter) expire(gen uint64) bool {
	if !l.headStarted || gen != l.gen || l.timeoutMs > 0 || l.overRows > 0 {
		return false
	}
	l.timeoutMs = l.queue.front().lim.timeoutMs
	return true
}

// collect hands out the statements finished since the last call. The slice
// is the limiter's, reused for the next ones: the caller is done with it
// before the session's next message.
func (l *limiter) collect() []stmtDone {
	d := l.done
	l.done = l.done[:0]
	return d
}

// tagRows is the row count a CommandComplete tag reports (INSERT 0 5,
// UPDATE 3, SELECT 7, ...), or 0.
func tagRows(tag []byte) int64 {
	digits := tag[bytes.LastIndexByte(tag, ' ')+1:]
	if len(digits) == 0 || len(digits) > 18 { // 18 digits cannot overflow
		return 0
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
