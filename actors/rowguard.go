package actors

import (
	"bytes"
	"encoding/binary"

	"tdb/wire"
	"tdb/wire/classify"
)

// Keeping max_rows_per_query's error true to the data.
//
// The proxy counts rows as they reach it, but the backend runs ahead: by the
// time a statement passes the limit it may have finished, and in an implicit
// transaction (one statement, or a simple Query of several) committed what
// it wrote. A client that gets ERROR 54000 must be able to trust that
// nothing of its batch happened, as with any other error. So:
//
//   - A batch that may both write and return rows (a simple Query whose
//     statements do; an extended-protocol batch whose statements, read
//     from the messages received behind its first, do, or are not all known), sent outside a
//     transaction while the workspace has a row limit, runs inside one the
//     proxy opens (a BEGIN sent ahead of it, its answer not relayed). At the
//     batch's ReadyForQuery the proxy commits it, or rolls it back when the
//     limit was passed or the batch failed, and the client sees the status
//     an implicit transaction would have left: idle.
//   - Inside the client's own transaction, a batch that passed the limit
//     without the backend failing it gets a statement that fails to parse
//     sent after it, so the transaction is aborted as a backend error would
//     have left it: later statements fail with 25P02 and COMMIT rolls back.
//
// Until that final exchange is done the client's next batch waits (the
// event loop hands the session to the goroutine relay for it), so nothing
// the client sends next can run inside the proxy's transaction or before the
// abort.

// What the proxy sends on its own account.
const (
	guardBegin    = "BEGIN"
	guardCommit   = "COMMIT"
	guardRollback = "ROLLBACK"
	// guardAbort fails to parse, which aborts the transaction; the word names
	// the reason in the backend's log.
	guardAbort = "tdb_max_rows_per_query_exceeded"
)

// Swallow states: which of the proxy's own exchanges the backend answers next.
const (
	swallowNone   = 0
	swallowBegin  = 1 // the BEGIN ahead of a guarded batch
	swallowFinal  = 2 // the COMMIT, ROLLBACK or abort after a batch
	swallowLock   = 3 // the capture lock ahead of a batch (capturelock.go)
	swallowUnlock = 4 // the capture lock given back after a transaction
)

// maxGuardRollbacks bounds the ROLLBACKs sent to leave a guarded transaction
// (a second one only when a cancel hit the first).
const maxGuardRollbacks = 3

// beginMessage is what the proxy sends ahead of a guarded batch
// (ownstatement.go).
var beginMessage = appendOwn(nil, guardBegin)

// guardable reports whether a statement may run inside a transaction the
// proxy opens, and whether it may write and may return rows. Only plain
// data statements (and settings) are: transaction control, DDL, COPY and
// utility statements (some cannot run in a transaction block) are never
// guarded. A statement that returns rows writes when it is a data-modifying
// WITH or EXPLAIN ANALYZE, or calls a function that may write
// (classify.MayCallWritingFunction, which parses text with a parenthesis
// once: called only with a row limit set).
func guardable(kind classify.Kind, text string, own *classify.Functions) (ok, writes, rows bool) {
	switch kind {
	case classify.DML:
	case classify.Set:
		return true, false, false
	case classify.Other:
		if isWord(leadingWord(text), "execute") {
			return true, true, true // a statement prepared in SQL (PREPARE): any DML
		}
		return false, false, false
	default:
		return false, false, false
	}
	switch w := leadingWord(text); {
	case isWord(w, "select"), isWord(w, "values"), isWord(w, "table"):
		return true, classify.MayCallWritingFunction(text, own), true
	case isWord(w, "with"), isWord(w, "explain"):
		return true, hasWord(text, "insert") || hasWord(text, "update") || hasWord(text, "delete") ||
			hasWord(text, "merge") || hasWord(text, "execute") || classify.MayCallWritingFunction(text, own), true
	case isWord(w, "truncate"):
		return true, true, false
	case isWord(w, "insert"), isWord(w, "update"), isWord(w, "delete"), isWord(w, "merge"):
		return true, true, hasWord(text, "returning")
	}
	return true, true, true // not told apart (a comment inside a parenthesis): both, to be safe
}

// guardQuery reports whether a simple Query's statements need a guarded
// transaction: some may write, some may return rows, and all can be guarded.
func guardQuery(r classify.Result, own *classify.Functions) bool {
	var writes, rows bool
	for i := range r.Statements {
		st := &r.Statements[i]
		ok, w, rw := guardable(st.Kind, st.Text, own)
		if !ok || st.NoTxn {
			return false
		}
		writes, rows = writes || w, rows || rw
	}
	return writes && rows
}

// guardExtended reports whether an extended-protocol batch that begins with
// the statement first needs the proxy's transaction: whether the batch may
// both write and return rows (a pipeline of a SELECT and an INSERT is one
// implicit transaction up to its Sync). Its later statements are those of
// the messages already received behind its first (ahead): a driver sends a
// batch in one write. Where the batch's Sync is not among them the rest is
// unknown, and a batch that begins with a statement that can be guarded is
// (under s.mu, with a row limit: guardOrWait asks). name is first's
// statement name.
func (s *session) guardExtended(first stmtInfo, name string, ahead []byte) bool {
	ok, writes, rows := guardable(first.kind, first.text, s.ownFunctions())
	if !ok {
		return false
	}
	if writes && rows {
		return true
	}
	return s.scan().mayWriteAndReturnRows(writes, rows, name, first, ahead)
}

// guardFirst is guardOrWait for an extended-protocol batch that begins with
// the statement first (named name), ahead what came behind its message.
func (s *session) guardFirst(first stmtInfo, name string, ahead []byte) (guard, wait bool) {
	return s.guardOrWait(func() bool { return s.guardExtended(first, name, ahead) })
}

// guardOrWait decides for a message that begins a batch whether the batch
// runs in the proxy's transaction (guard: the proxy's BEGIN goes ahead of
// the message), or must first wait for the client's batches still in
// flight (wait: the proxy opens its transaction only with nothing in
// flight, and the message is handled again once they are answered, so pend
// holds until then). needs reports whether the batch needs the transaction;
// it is asked only where the answer counts. A batch sent in a transaction
// behind a statement that may return rows waits too: should that statement
// pass the limit, the proxy aborts the transaction before this batch runs,
// as the backend's own error would have (finalFor). Under s.mu.
func (s *session) guardOrWait(needs func() bool) (guard, wait bool) {
	switch {
	case s.mayGuard():
		if !s.rowLimited() || !needs() {
			return false, false
		}
		s.guardBatch()
		return true, false
	case s.mayWait() && s.rowLimited() && (needs() || s.behindRowsInTx()):
		s.pend(s.clientInflight())
		return false, true
	}
	return false, false
}

// behindRowsInTx reports whether a statement of the client's in flight may
// return rows, in a transaction (one the session is in, or one a statement
// in flight begins). Under s.mu.
func (s *session) behindRowsInTx() bool {
	begins, _, rows := s.track.inFlight(s.ownFunctions())
	return rows && (begins || s.txStatus != 'I')
}

// mayWait reports whether a message that begins a batch may wait for the
// client's batches in flight before it (under s.mu): once, not behind the
// proxy's own exchange alone, and not once the backend is lost (its pump,
// gone, would never let the wait end).
func (s *session) mayWait() bool {
	return s.gov != nil && !s.unsynced && !s.waited && !s.lost && s.clientInflight() > 0
}

// notYetArrived stands for the first statement of a batch whose first Parse
// or Bind has not arrived with the message that begins it (a driver that
// writes a Close on its own): guardable cannot tell what it does, so it
// counts as a statement that may write and return rows, and the batch is
// guarded.
var notYetArrived = stmtInfo{kind: classify.DML}

// firstAhead finds, for a batch that begins with a Close, a Describe or a
// Flush, its first statement: that of the first Parse or Bind among the
// messages that came with it, and what came behind that message; or
// notYetArrived where those messages end before one. It reports false where
// the batch has none before its Sync (or something else comes first), and
// without a row limit (under s.mu).
func (s *session) firstAhead(ahead []byte) (first stmtInfo, name string, rest []byte, ok bool) {
	if !s.rowLimited() {
		return stmtInfo{}, "", nil, false
	}
	b := s.scan()
	for {
		typ, body, next, whole := nextMessage(ahead)
		if !whole {
			return notYetArrived, "", nil, true
		}
		switch typ {
		case 'C', 'D', 'H':
			ahead = next
			continue
		case 'P':
			name, info, ok := b.parsed(body)
			return info, name, next, ok
		case 'B':
			_, stmt := cstring2(body)
			info, ok := b.earlier(string(stmt))
			return info, string(stmt), next, ok
		}
		return stmtInfo{}, "", nil, false
	}
}

// nextMessage splits the first whole message off b; whole is false where b
// does not begin with one.
func nextMessage(b []byte) (typ byte, body, rest []byte, whole bool) {
	if len(b) < 5 {
		return 0, nil, b, false
	}
	n := int(binary.BigEndian.Uint32(b[1:5]))
	if n < 4 || len(b) < 1+n {
		return 0, nil, b, false
	}
	return b[0], b[5 : 1+n], b[1+n:], true
}

// scan reads a batch's messages with this session's statements (under s.mu).
func (s *session) scan() batchScan {
	return batchScan{classify: s.proxy.classes.Classify, prepared: s.track.prepared, own: s.ownFunctions()}
}

// batchScan reads the messages of an extended-protocol batch behind its
// first statement.
type batchScan struct {
	classify func(sql string) classify.Result
	prepared map[string]stmtInfo // statements parsed in earlier batches
	own      *classify.Functions // the workspace's function names
}

// parsed returns the statement a Parse message makes, and whether it is
// one statement that can run in a transaction block.
func (b batchScan) parsed(body []byte) (name string, info stmtInfo, ok bool) {
	name, text, err := wire.ParseText(body)
	if err != nil {
		return "", stmtInfo{}, false
	}
	r := b.classify(string(text))
	if len(r.Statements) != 1 || r.Statements[0].NoTxn {
		return "", stmtInfo{}, false
	}
	return name, stmtInfo{text: r.Statements[0].Text, kind: r.Statements[0].Kind}, true
}

// earlier returns a statement parsed in an earlier batch, and whether there
// is one that can run in a transaction block.
func (b batchScan) earlier(name string) (stmtInfo, bool) {
	info := boundStmt(b.prepared, name)
	return info, !info.atOnce
}

// sqlPrepared stands for a statement a Bind names that no Parse made: one
// the client prepared in SQL (PREPARE), which the proxy does not follow,
// or none (the backend refuses the Bind). It may be any DML, so it may
// write and return rows.
var sqlPrepared = stmtInfo{kind: classify.DML, text: "EXECUTE"}

// boundStmt returns the statement a Bind of name binds.
func boundStmt(prepared map[string]stmtInfo, name string) stmtInfo {
	if info, ok := prepared[name]; ok {
		return info
	}
	return sqlPrepared
}

// parsedStmt is a statement a batch parses.
type parsedStmt struct {
	name string
	info stmtInfo
}

// mayWriteAndReturnRows reads the messages of a batch behind its first
// statement (which may write, may return rows, and was parsed or bound as
// name) up to its Sync, and reports whether the batch may both write and
// return rows, or holds what cannot be told: a statement that cannot be
// guarded, a message other than the extended protocol's, or no Sync yet.
func (b batchScan) mayWriteAndReturnRows(writes, rows bool, name string, first stmtInfo, ahead []byte) bool {
	// A Bind names the latest Parse of its statement name. A batch that
	// runs nothing (a driver preparing statements: Parse, Describe, Sync)
	// needs no guard.
	var kept [4]parsedStmt
	parsed := append(kept[:0], parsedStmt{name, first})
	executes := false
	for {
		typ, body, next, whole := nextMessage(ahead)
		if !whole {
			return true // the rest of the batch is still to come
		}
		ahead = next
		var info stmtInfo
		switch typ {
		case wire.MsgSync:
			return executes && writes && rows
		case 'E':
			executes = true
			continue
		case 'D', 'C', 'H':
			continue
		case 'P':
			pname, pinfo, ok := b.parsed(body)
			if !ok {
				return true
			}
			info = pinfo
			parsed = append(parsed, parsedStmt{pname, info})
		case 'B':
			_, stmt := cstring2(body)
			found := false
			for i := len(parsed) - 1; i >= 0 && !found; i-- {
				info, found = parsed[i].info, parsed[i].name == string(stmt)
			}
			if !found {
				if info, found = b.earlier(string(stmt)); !found {
					return true
				}
			}
		default:
			return true // a Query, a FunctionCall, COPY data: not a plain batch
		}
		ok, w, rw := guardable(info.kind, info.text, b.own)
		if !ok {
			return true
		}
		writes, rows = writes || w, rows || rw
	}
}

// leadingWord returns a statement's first word as written (a part of
// text, so nothing is allocated), past the parentheses a query may open with
// ("(SELECT 1) UNION (SELECT 2)"); statement texts from the classifier start
// at their first token. isWord compares it.
func leadingWord(text string) string {
	i := 0
	for i < len(text) && (text[i] == '(' || text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r') {
		i++
	}
	j := i
	for j < len(text) && (text[j]|0x20 >= 'a' && text[j]|0x20 <= 'z') {
		j++
	}
	return text[i:j]
}

// isWord reports whether w is word (lower case), ignoring ASCII case.
func isWord(w, word string) bool {
	return len(w) == len(word) && hasFoldAt(w, 0, word)
}

// hasWord reports whether text holds word (lower case) as a whole word,
// ignoring case. Literals and comments are not told apart: a false match
// costs a round trip, nothing more.
func hasWord(text, word string) bool {
	for i := range text {
		if wordAt(text, i, word) {
			return true
		}
	}
	return false
}

// wordAt reports whether text holds word (lower case) at i as a whole word,
// ignoring ASCII case.
func wordAt(text string, i int, word string) bool {
	end := i + len(word)
	return hasFoldAt(text, i, word) && (i == 0 || !classify.IsIdentByte(text[i-1])) &&
		(end == len(text) || !classify.IsIdentByte(text[end]))
}

// mayGuard reports whether a message may begin a guarded batch: it begins a
// batch, outside a transaction, with nothing else in flight (under s.mu).
func (s *session) mayGuard() bool {
	return s.gov != nil && s.inflight == 0 && !s.unsynced && s.txStatus == 'I' && s.swallow.Load() == swallowNone
}

// guardBatch opens a guarded transaction for the batch a message begins
// (under s.mu, after mayGuard, with a row limit, for a batch guardQuery or
// guardExtended chose).
func (s *session) guardBatch() {
	s.guarded = true
	s.inflight++ // the BEGIN's ReadyForQuery
	s.swallow.Store(swallowBegin)
	s.pend(1) // the batch's own ReadyForQuery (the BEGIN's is not counted)
}

// rowLimited reports whether the session's workspace has a row limit
// (under s.mu).
func (s *session) rowLimited() bool {
	return s.gov != nil && s.gov.limits().maxRows > 0
}

// pend holds the client's next batches until the n-th ReadyForQuery from
// now (the proxy's own are not counted), and any final exchange of the
// proxy's after it, are done (under s.mu).
func (s *session) pend(n int) {
	s.holdRFQs = max(s.holdRFQs, n)
	if s.pending == nil {
		s.pending = make(chan struct{})
		s.held.Store(true)
	}
}

// clientInflight is how many of the ReadyForQuery messages in flight answer
// the client's batches: all but one of the proxy's own exchanges, of which
// at most one is in flight (under s.mu).
func (s *session) clientInflight() int {
	if s.swallow.Load() != swallowNone {
		return s.inflight - 1
	}
	return s.inflight
}

// settle lets the client's next batch go (under s.mu).
func (s *session) settle() {
	s.holdRFQs = 0
	if s.pending != nil {
		close(s.pending)
		s.pending = nil
		s.held.Store(false)
	}
}

// gate returns what a client message of type typ must wait for before it
// is relayed: nil unless it begins a batch while the proxy's final exchange
// for the last one is still to come. Terminate waits only behind a guarded
// batch the client has synced, which PostgreSQL would commit before it read
// the Terminate: the proxy's COMMIT must come first. Otherwise it does not
// (it is not relayed, and a backend session left in the proxy's
// transaction is closed, not pooled).
func (s *session) gate(typ byte) chan struct{} {
	if !s.held.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unsynced || typ == wire.MsgTerminate && !s.guarded {
		return nil // part of the batch being decided
	}
	return s.pending
}

// holdIdleClient holds the client's next batch (pend) for an exchange of
// the proxy's that the backend pump starts on its own and may put off
// (the capture lock's unlock), and reports whether it may start now: not
// when the client pump has let a message through that the state does not
// count yet (forwarding), whose batch could reach the backend ahead of the
// exchange and have its answers taken for the exchange's (under s.mu).
// The client pump stores forwarding before it looks at held, and this
// stores held before it looks at forwarding, so one of the two sees the
// other. forwarding may still be set for a message that waits (stepWait):
// the unlock then goes after a later batch, which is harmless. The row
// limit's abort does not use it: it must come before the client's next
// statement, which waits for it (behindRowsInTx).
func (s *session) holdIdleClient() bool {
	created := s.pending == nil
	s.pend(0)
	if !s.forwarding.Load() {
		return true
	}
	if created {
		s.settle()
	}
	return false
}

// finalFor returns the statement the proxy sends after a batch that ended
// with status, or "" (under s.mu, before the limiter forgets the batch).
// others is how many of the client's batches are in flight behind it: the
// abort must come before the client's next statement, so with one already
// sent (or begun: messages without their Sync) there is none (the client's
// transaction is not aborted then).
func (s *session) finalFor(status byte, others int) string {
	over := s.gov != nil && s.gov.lim.overRows > 0
	switch {
	case s.guarded && status == 'T' && !over:
		return guardCommit
	case s.guarded && status != 'I':
		return guardRollback
	case !s.guarded && over && status == 'T' && others == 0 && !s.unsynced:
		return guardAbort
	}
	return ""
}

// A batch that commits what it wrote after returning rows (BEGIN; SELECT …;
// INSERT …; COMMIT in one Query, or in one pipeline up to its Sync) would
// keep its writes when a statement passes the row limit: the backend has
// run the COMMIT by the time the proxy has counted the rows, and the
// proxy's transaction cannot hold a batch that ends transactions itself.
// With a row limit such a batch is refused, so that 54000 keeps nothing.

// commitRefusal is the error for a batch that would commit past the row
// limit.
func commitRefusal() *wire.PGError {
	return wire.NewError("ERROR", "0A000",
		"with max_rows_per_query set, a batch that returns rows and writes cannot also commit: send COMMIT on its own").
		WithHint("Send the statements and the COMMIT as separate queries, or leave out BEGIN and COMMIT: a batch outside a transaction is one.")
}

// commitKind reports whether a statement commits a transaction, or
// prepares it to be committed later.
func commitKind(k classify.Kind) bool {
	return k == classify.Commit || k == classify.CommitPrepared || k == classify.PrepareTxn
}

// effects reports whether a statement may write and may return rows, for
// the commit check: plain data statements as guardable reads them,
// transaction control neither, DDL and utility statements write (LOCK,
// VACUUM: as if), DO and CALL both, EXPLAIN and SHOW return rows.
func effects(kind classify.Kind, text string, own *classify.Functions) (writes, rows bool) {
	switch kind {
	case classify.DML, classify.Set:
		_, writes, rows = guardable(kind, text, own)
		return writes, rows
	case classify.Begin, classify.Commit, classify.Rollback, classify.Savepoint, classify.RollbackTo,
		classify.Release, classify.PrepareTxn, classify.CommitPrepared, classify.RollbackPrepared:
		return false, false
	case classify.Other:
		switch w := leadingWord(text); {
		case isWord(w, "do"), isWord(w, "call"), isWord(w, "execute"):
			return true, true
		case isWord(w, "explain"), isWord(w, "show"):
			return false, true
		}
	}
	return true, false
}

// queryCommitsWritesAndRows reports whether a simple Query's statements may
// return rows and one of them commits, while the Query or the transaction
// it runs in (wrote: before it) may have written.
func queryCommitsWritesAndRows(r classify.Result, wrote bool, own *classify.Functions) bool {
	commits := false
	for i := range r.Statements {
		commits = commits || commitKind(r.Statements[i].Kind)
	}
	if !commits {
		return false
	}
	writes, rows := wrote, false
	for i := range r.Statements {
		st := &r.Statements[i]
		w, rw := effects(st.Kind, st.Text, own)
		writes, rows = writes || w, rows || rw
	}
	return writes && rows
}

// commitPastLimit reports whether a simple Query would commit past the row
// limit (queryCommitsWritesAndRows), with one set.
func (s *session) commitPastLimit(r classify.Result) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rowLimited() && queryCommitsWritesAndRows(r, s.wroteBefore(), s.ownFunctions())
}

// wroteBefore reports whether the transaction that the client's next
// statement runs in may have written: statements of it that completed, or
// are in flight (under s.mu).
func (s *session) wroteBefore() bool {
	begins, writes, _ := s.track.inFlight(s.ownFunctions())
	if s.txStatus == 'I' && !begins {
		return false
	}
	return writes || s.track.txWrites > 0 || s.track.txMayWrite || len(s.track.txDDL) > 0
}

// noteMayWrite records, with a row limit set, that a statement that
// completed (or suspended with rows so far) may have written in the
// current transaction without its tag saying so: a SELECT calling a
// function that may write, DO, CALL, EXECUTE of a prepared statement
// (under s.mu). Cursors, LISTEN, PREPARE and the like do not count.
func (s *session) noteMayWrite(st stmtInfo) {
	if (st.kind != classify.DML && st.kind != classify.Other) || !s.rowLimited() {
		return
	}
	var writes bool
	if st.kind == classify.DML {
		_, writes, _ = guardable(st.kind, st.text, s.ownFunctions())
	} else {
		w := leadingWord(st.text)
		writes = isWord(w, "do") || isWord(w, "call") || isWord(w, "execute")
	}
	if writes {
		s.track.txMayWrite = true
	}
}

// noteCallWrote records, with a row limit set, that a FunctionCall
// message (the protocol's fast path, as libpq's large-object functions
// use) may have written in the current transaction (under s.mu).
func (s *session) noteCallWrote() {
	if s.rowLimited() {
		s.track.txMayWrite = true
	}
}

// onlyOwnCommitInFlight reports whether all that runs on the backend is
// the proxy's COMMIT after a guarded batch: a client that left then is not
// a reason to cancel it, as PostgreSQL commits an implicit transaction
// whether or not its client stays (under s.mu).
func (s *session) onlyOwnCommitInFlight() bool {
	return s.swallow.Load() == swallowFinal && s.final == guardCommit && s.inflight == 1 && !s.unsynced
}

// bindCommitsWritesAndRows notes what the statement a Bind runs may do in
// the batch in progress, and reports whether it commits after statements
// of the batch that may return rows, in a transaction that may have
// written, with a row limit (under s.mu).
func (s *session) bindCommitsWritesAndRows(info stmtInfo) bool {
	if !s.rowLimited() {
		return false
	}
	if commitKind(info.kind) {
		return s.batchRows && (s.batchWrites || s.wroteBefore())
	}
	w, rw := effects(info.kind, info.text, s.ownFunctions())
	s.batchWrites, s.batchRows = s.batchWrites || w, s.batchRows || rw
	return false
}

// txnTag reports whether a command tag is of a statement that began or
// ended a transaction: one of the client's that ran inside the proxy's
// transaction has taken it over (a BEGIN makes it the client's own; a
// COMMIT or ROLLBACK ends it).
func txnTag(tag []byte) bool {
	for _, t := range [...]string{"BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "PREPARE TRANSACTION"} {
		if bytes.HasPrefix(tag, []byte(t)) {
			return true
		}
	}
	return false
}

// needsFinal reports whether the ReadyForQuery with status is followed by an
// exchange of the proxy's own (the event loop hands the session over for it).
func (s *session) needsFinal(status byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The ReadyForQuery is still counted in inflight here.
	return s.swallow.Load() == swallowNone && s.finalFor(status, s.clientInflight()-1) != ""
}

// swallowed handles a backend message that answers one of the proxy's own
// statements: none reaches the client but a COMMIT's error, and the final
// ReadyForQuery, which carries the status the client's batch left. The
// extended protocol's answers to an exchange (ParseComplete, BindComplete,
// CloseComplete: ownstatement.go) are dropped with the rest; an error
// skips what is left of it up to its Sync, and is read here as before.
func (s *session) swallowed(typ byte, body []byte) (act relayAction, fwd []byte, next string) {
	act.drop = true
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.swallow.Load()
	switch typ {
	case wire.MsgErrorResponse:
		switch {
		case sw == swallowBegin:
			s.guarded = false // the batch runs as the client sent it
		case sw == swallowLock:
			// Not taken: the client's batch fails with this error.
			lerr := wire.NewError("ERROR", "XX000", "the capture lock could not be taken")
			if severity, code, msg, err := wire.ParseErrorFields(body); err == nil {
				lerr = &wire.PGError{Severity: severity, Code: code, Message: msg}
			}
			s.lockAnswered(lerr)
		case sw == swallowUnlock:
			s.unlockFailed = true // a late cancel of the client's hit it
		case sw == swallowFinal && s.final == guardCommit:
			act.drop = false // the commit failed: the batch's changes are gone
			s.final = guardRollback
		}
	case 'S', 'A': // ParameterStatus, NotificationResponse: not results
		act.drop = false
	case wire.MsgDataRow:
		if sw == swallowLock {
			s.journalPending = journalPendingRow(body)
		}
	case wire.MsgReadyForQuery:
		status, _ := wire.ParseReadyForQuery(body)
		if s.inflight > 0 {
			s.inflight--
		}
		s.txStatus = status
		switch sw {
		case swallowBegin:
			s.swallow.Store(swallowNone)
			return act, body, ""
		case swallowLock:
			s.swallow.Store(swallowNone)
			s.lockAnswered(nil)
			return act, body, ""
		case swallowUnlock:
			if s.unlockFailed {
				s.unlockFailed = false
				if s.unlockTries < maxGuardRollbacks {
					// The lock is still held: every DDL of the workspace
					// would wait for this session. Give it back again.
					s.unlockTries++
					s.inflight++
					return act, body, unlockSQL
				}
				s.lost = true // still held: the backend session is closed, not pooled
			} else {
				s.journalDone = nil // deleted with the unlock
			}
			s.unlockTries = 0
			s.swallow.Store(swallowNone)
			if s.holdRFQs == 0 {
				s.settle()
			}
			return act, body, ""
		}
		if s.guarded && status != 'I' && s.rollbacks < maxGuardRollbacks {
			// A cancel meant for the batch hit the proxy's statement: the
			// transaction is still open, and is rolled back.
			s.rollbacks++
			s.final = guardRollback
			s.inflight++
			return act, body, guardRollback
		}
		switch {
		case s.final == guardAbort:
			s.track.failed = true
		case s.final == guardCommit && status == 'I':
			// DDL that joined the batch (a pipeline that did not Sync
			// before it) committed with the proxy's COMMIT.
			s.track.commitTx()
			s.track.discard()
		default:
			s.track.discard()
		}
		if status == 'I' {
			s.track.txEnded()
			if s.gov != nil {
				s.gov.lim.txEnded()
			}
		}
		s.swallow.Store(swallowNone)
		s.guarded, s.final, s.rollbacks = false, "", 0
		if s.holdRFQs == 0 {
			s.settle()
		}
		act.drop = false
	}
	return act, body, ""
}

// beginFinal starts the proxy's final exchange after a batch's
// ReadyForQuery, which the client does not get: the final one stands for it
// (under s.mu).
func (s *session) beginFinal(final string) {
	s.final = final
	s.inflight++
	s.swallow.Store(swallowFinal)
	s.pend(0)
}

// sendOwn writes one of the proxy's statements to the backend (goroutine
// relay, backend pump), after any cancel the proxy has on its way: the
// cancel must not hit it.
func (s *session) sendOwn(sql string) error {
	if sql == unlockSQL {
		sql = s.unlockStatement()
	}
	s.gov.awaitCancel()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.bc.Conn.Write(ownMessage(sql))
	return err
}
