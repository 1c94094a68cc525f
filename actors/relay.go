package actors

import (
	"encoding/binary"
	"net"
	"strconv"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/wire"
	"tdb/wire/classify"
)

// The relay's two synchronous cores, fromClient and fromBackend, shared by
// the event loop (loop.go) and the goroutine relay, and the goroutine
// relay's two pumps around them.

// clientStep is what the relay does with a client message after fromClient.
type clientStep uint8

const (
	stepForward    clientStep = iota // send the (maybe replaced) body to the backend
	stepTerminate                    // Terminate: end the session, without forwarding it
	stepFail                         // malformed: send the error to the client and end
	stepGuard                        // send the proxy's BEGIN, then the body (rowguard.go)
	stepLock                         // take the capture lock, then send the body (capturelock.go)
	stepWait                         // wait for the batches in flight, then handle the message again (rowguard.go)
	stepRead                         // read more of the batch from the client, then handle the message again (capturelock.go)
	stepRefuseBind                   // send the body, a refusal's Parse, in place of the Bind it refuses
)

// prefix is what the proxy sends ahead of a message for step, in the same
// write (stepLock's Query goes alone: sendAfterLock).
func (step clientStep) prefix() []byte {
	if step == stepGuard {
		return beginMessage
	}
	return nil
}

// staleSettings refuses a statement sent in an extended-protocol batch
// behind one that may have changed a setting the proxy follows.
func staleSettings() *wire.PGError {
	return wire.NewError("ERROR", "0A000",
		"a statement that may change settings ends its batch through the proxy: send Sync before the next statement")
}

// batchStep is the step for a message that may begin a guarded batch, or
// one that takes the capture lock (never both: a guarded batch holds no DDL).
func batchStep(guard, lock bool) clientStep {
	switch {
	case guard:
		return stepGuard
	case lock:
		return stepLock
	}
	return stepForward
}

// fromClient inspects one client message and updates the session's state
// for it: the synchronous core of the client pump, shared by the goroutine
// relay and the event loop. The body to forward may be a refusal's sentinel.
// ahead holds what was received from the client behind the message, not
// yet handled (whole messages, and maybe the start of one).
func (s *session) fromClient(typ byte, body, ahead []byte) ([]byte, clientStep, error) {
	guard, lock := false, false
	switch typ {
	case 'C', 'D', 'H':
		// unsynced changes only here, on the client's side.
		if !s.unsynced {
			// A batch that begins before its first Parse or Bind (a
			// driver closing statements it no longer caches).
			s.mu.Lock()
			var wait bool
			if first, name, rest, ok := s.firstAhead(ahead); ok {
				guard, wait = s.guardFirst(first, name, rest)
			}
			// Its DDL takes the capture lock ahead of it, as where the
			// batch begins with a statement (not behind a Flush: the
			// client may wait for its answer).
			switch s.captureStep(!guard && !wait && typ != 'H', false, ahead) {
			case stepRead:
				s.mu.Unlock()
				return body, stepRead, nil
			case stepWait:
				wait = true
			case stepLock:
				lock = true
			}
			s.mu.Unlock()
			if wait {
				return body, stepWait, nil
			}
		}
	}
	switch typ {
	case 'Q':
		text, err := wire.QueryText(body)
		if err != nil {
			return nil, stepFail, err
		}
		// unsynced changes only here, on the client's side.
		if s.unsynced && !s.endAnsweredBatch() {
			// After an error the backend ignores a Query until the batch's
			// Sync and never answers it, while the limits and the query log
			// would wait for its ReadyForQuery; without one it would run
			// inside the batch, after a statement that may have changed how
			// the backend reads text.
			return nil, stepFail, wire.NewError("FATAL", "08P01",
				"a Query message inside an unfinished extended-protocol batch is not supported here; send Sync first")
		}
		sql := s.text(text)
		r, rej, ignored := s.inspect(sql)
		if rej == nil && s.commitPastLimit(r) {
			rej, ignored = commitRefusal(), ignoredWhenAborted(r, commitRefusal())
			r = classify.Result{}
		}
		if rej != nil {
			body = append(append([]byte(nil), s.refuse(rej, ignored)...), 0)
		}
		s.mu.Lock()
		guard := false
		if rej == nil {
			var wait bool
			if guard, wait = s.guardOrWait(func() bool { return guardQuery(r, s.ownFunctions()) }); wait {
				s.mu.Unlock()
				return body, stepWait, nil
			}
		}
		if rej == nil && !guard && s.captureLockWaits(r.HasDDL()) {
			s.mu.Unlock()
			return body, stepWait, nil
		}
		if rej == nil && mayChangeSettings(sql, r, s.captures()) {
			s.pend(s.clientInflight() + 1) // this Query's ReadyForQuery
		}
		lock := !guard && rej == nil && s.takeCaptureLock(r.HasDDL())
		s.track.query(r)
		s.gov.query(sql, r)
		s.inflight++
		s.mu.Unlock()
		return body, batchStep(guard, lock), nil
	case 'P':
		name, text, err := wire.ParseText(body)
		if err != nil {
			return nil, stepFail, err
		}
		sql := s.text(text)
		r, rej, ignored := s.inspect(sql)
		// unsynced and settingsSync change only here, on the client's side.
		if rej == nil && s.unsynced && s.settingsSync {
			// The backend would read this text after a statement of the
			// same batch that may have changed how it reads text, before
			// the change could be seen.
			rej = staleSettings()
		}
		if rej == nil && name == ownName {
			rej = reservedName("prepared statement")
			ignored = ignoredWhenAborted(r, rej)
		}
		if rej != nil {
			// After a ROLLBACK or COMMIT earlier in the batch the
			// transaction is no longer aborted when this runs.
			body = parseBody(name, s.refuse(rej, ignored && !s.batchExits))
		}
		s.mu.Lock()
		if rej == nil && len(r.Statements) == 1 && !r.Statements[0].NoTxn {
			var wait bool
			guard, wait = s.guardFirst(stmtInfo{text: r.Statements[0].Text, kind: r.Statements[0].Kind}, name, ahead)
			if wait {
				s.mu.Unlock()
				return body, stepWait, nil
			}
		}
		lock := false
		switch step := s.captureStep(rej == nil && !guard, r.HasDDL(), ahead); step {
		case stepRead, stepWait:
			s.mu.Unlock()
			return body, step, nil
		case stepLock:
			lock = true
		}
		s.track.parse(name, sql, r)
		if rej == nil && mayChangeSettings(sql, r, s.captures()) {
			s.track.markRisky(name)
		}
		s.unsynced = true
		s.mu.Unlock()
		return body, batchStep(guard, lock), nil
	case 'B':
		portal, stmt := cstring2(body)
		// A DDL statement prepared earlier (asked before the lock: the
		// leader's answer may take a while).
		lost := false
		if s.captures() {
			s.mu.Lock()
			ddl := boundStmt(s.track.prepared, s.name(stmt)).kind == classify.DDL
			s.mu.Unlock()
			lost = ddl && s.proxy.leaderUnconfirmed()
		}
		s.mu.Lock()
		p, st := s.name(portal), s.name(stmt)
		info := boundStmt(s.track.prepared, st)
		// A prepared DDL statement bound behind a statement that may have
		// changed the settings a version carries would run with values the
		// proxy sees only at the batch's end, and be recorded with the old.
		// So would one bound behind a COMMIT or ROLLBACK of the
		// transaction open when the batch began, if one of them changed
		// in it (a SET LOCAL goes back).
		stale := s.captures() && s.unsynced && info.kind == classify.DDL &&
			(s.settingsSync || s.batchExits && s.txStatus != 'I' && s.track.txTouched)
		commits := s.bindCommitsWritesAndRows(info)
		reserved := string(portal) == ownName
		refused := stale || commits || lost || reserved
		ignored := !s.batchExits // as at Parse
		guard, wait := s.guardFirst(info, st, ahead)
		if wait {
			s.mu.Unlock()
			return body, stepWait, nil
		}
		// A statement prepared in an earlier batch (a driver's statement
		// cache) takes the capture lock where it runs: the lock its Parse
		// took went back at that batch's end.
		lock := false
		switch step := s.captureStep(!guard && !refused, info.kind == classify.DDL, ahead); step {
		case stepRead, stepWait:
			s.mu.Unlock()
			return body, step, nil
		case stepLock:
			lock = true
		}
		if exitKind(info.kind) && !refused {
			s.batchExits = true
		}
		s.track.bind(p, st)
		s.gov.bind(p, info.raw)
		s.unsynced = true
		if info.risky { // the portal's statement (track.bind)
			s.settingsSync = true // what it binds may run before the Execute (a later portal's)
		}
		s.mu.Unlock()
		switch {
		case stale:
			return parseBody(refusedBindName, s.refuse(staleSettings(), ignored)), stepRefuseBind, nil
		case commits:
			return parseBody(refusedBindName, s.refuse(commitRefusal(), ignored)), stepRefuseBind, nil
		case lost:
			return parseBody(refusedBindName, s.refuse(leaderLostDDL(), ignored)), stepRefuseBind, nil
		case reserved:
			return parseBody(refusedBindName, s.refuse(reservedName("portal"), ignored)), stepRefuseBind, nil
		}
		return body, batchStep(guard, lock), nil
	case 'E':
		portal, _ := cstring2(body)
		s.mu.Lock()
		p := s.name(portal)
		if s.track.portals[p].risky {
			s.settingsSync = true // held at Sync, and no more text until then
		}
		s.track.execute(p)
		s.gov.execute(p)
		s.unsynced = true
		s.batchRan = true
		s.mu.Unlock()
		return body, stepForward, nil
	case 'C':
		if len(body) > 1 {
			name, _ := cstring2(body[1:])
			s.mu.Lock()
			s.track.close(body[0], string(name))
			s.gov.closeMsg(body[0], string(name))
			s.mu.Unlock()
		}
	case 'S':
		s.mu.Lock()
		s.track.sync()
		s.gov.sync()
		s.inflight++
		s.unsynced, s.batchRan = false, false
		s.batchWrites, s.batchRows, s.batchExits = false, false, false
		if s.settingsSync {
			s.settingsSync = false
			s.pend(s.clientInflight()) // this Sync's ReadyForQuery
		}
		s.mu.Unlock()
	case 'F':
		// A FunctionCall is a batch of its own, answered up to its
		// ReadyForQuery: the limits and the query log follow it like a
		// one-statement Query. The function may change a setting.
		if len(body) < 4 {
			return nil, stepFail, wire.NewError("FATAL", "08P01", "invalid FunctionCall message")
		}
		text := "function call (oid " + strconv.FormatUint(uint64(binary.BigEndian.Uint32(body)), 10) + ")"
		if s.unsynced {
			// As for a Query: after an error the backend would ignore it.
			return nil, stepFail, wire.NewError("FATAL", "08P01",
				"a FunctionCall message inside an unfinished extended-protocol batch is not supported here; send Sync first")
		}
		s.mu.Lock()
		s.pend(s.clientInflight() + 1)
		s.track.query(classify.Result{})
		s.gov.query(text, classify.Result{})
		s.inflight++
		s.mu.Unlock()
	case 'X':
		// Not forwarded: the relay decides whether the backend session
		// is pooled or terminated.
		return nil, stepTerminate, nil
	}
	switch typ {
	case 'D', 'C', 'H':
		s.mu.Lock()
		if typ == 'D' {
			s.track.describe()
		}
		s.unsynced = true // the backend may hold an open implicit transaction until Sync
		s.mu.Unlock()
	}
	return body, batchStep(guard, lock), nil
}

// endAnsweredBatch ends, at a simple Query, an extended-protocol batch that
// ran nothing (Parse, Describe, Bind, Close, Flush: no Execute, no Sync)
// and whose every message the backend has answered without an error. asyncpg
// sends one: its prepare is Parse, Describe and Flush, and the next Query
// (COMMIT, a COPY) follows once the answers are in, with no Sync between.
// PostgreSQL runs such a Query in the batch's implicit transaction, which
// holds nothing then, commits it at the Query's end and answers with the
// Query's ReadyForQuery: for the proxy the batch ends there, as at a Sync
// with no ReadyForQuery of its own. A batch the row guard put in the
// proxy's transaction (at its Parse) has the Query run in it, as in the
// implicit one, and the proxy commits it after the Query's ReadyForQuery.
// It reports whether it did (client pump).
func (s *session) endAnsweredBatch() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batchRan || s.settingsSync || s.inflight > 0 || s.swallow.Load() != swallowNone ||
		s.track.skipping || s.track.queue.len() > 0 {
		return false
	}
	delete(s.track.portals, "") // the Query's commit ends the unnamed portal
	s.unsynced = false
	s.batchWrites, s.batchRows, s.batchExits = false, false, false
	return true
}

// resultIn notes, under s.mu, that a statement's result (or an error) came
// in: in a batch not synced yet (Execute and Flush) with no other in
// flight, the client is idle from here (closeIdleClients), however long
// its statement ran, as it is from a batch's ReadyForQuery.
func (s *session) resultIn() {
	if s.unsynced && s.inflight == 0 {
		s.active.Store(time.Now().UnixNano())
	}
}

// clientToBackend forwards client frames, replacing refused statements with
// sentinels. It reports whether the client went away without Terminate, or
// that the session goes back to the event loop (back: the backend pump has
// stopped, and fr holds every byte read from the client, unhandled).
func (s *session) clientToBackend(fr *wire.FrameReader) (clientGone, back bool) {
	fw := wire.NewFrameWriter(s.bc.Conn)
	for {
		typ, body, err := fr.Next()
		if s.backToLoop.Load() {
			// The backend pump stopped for the loop, and set the read
			// deadline that may have ended this read. A message read
			// before it saw that is the loop's to handle.
			switch {
			case err == nil:
				msg := wire.AppendMessage(nil, typ, body)
				fr.Reset(prefixed(append(msg, drainAll(fr, s.client)...), s.client))
				return false, s.flushLocked(fw) == nil
			case isTimeout(err):
				return false, s.flushLocked(fw) == nil
			}
		}
		s.active.Store(time.Now().UnixNano())
		if err != nil {
			// The messages before the end are counted in flight: the
			// backend gets them, or a session draining its DDL would wait
			// for answers the backend never owed.
			_ = s.flushLocked(fw)
			if pe, ok := wire.AsPGError(err); ok {
				// Malformed or oversized message: tell the client and stop.
				_ = wire.WriteError(s.client, pe)
			}
			return true, false
		}
		// A new batch waits for the proxy's exchange after the last one,
		// which needs that batch's end delivered.
		if err := s.gateForwarding(fw, fr, typ); err != nil {
			return errors.Is(err, errClientLeft), false
		}
		body, step, perr := s.fromClient(typ, body, fr.Ahead())
		if step == stepRead {
			if body, step, perr, err = s.readBatch(fw, fr, typ, body); err != nil {
				return true, false
			}
		}
		if step == stepWait {
			// A batch the row guard needs waits for the batches before
			// it; then its message is handled again, without waiting.
			s.forwarding.Store(false)
			s.mu.Lock()
			ch := s.pending
			s.mu.Unlock()
			if err := s.await(fw, fr, typ, ch); err != nil {
				return errors.Is(err, errClientLeft), false
			}
			if err := s.gateForwarding(fw, fr, typ); err != nil {
				return errors.Is(err, errClientLeft), false
			}
			s.waited = true
			body, step, perr = s.fromClient(typ, body, fr.Ahead())
			if step == stepRead {
				body, step, perr, err = s.readBatch(fw, fr, typ, body)
			}
			s.waited = false
			if err != nil {
				return true, false
			}
		}
		s.forwarding.Store(false) // the state counts the message now
		switch step {
		case stepFail:
			_ = s.flushLocked(fw) // as at a read error
			_ = wire.WriteError(s.client, perr)
			return true, false
		case stepTerminate:
			_ = s.flushLocked(fw)
			return false, false
		}
		if step == stepRefuseBind {
			typ, step = wire.MsgParse, stepForward
		}
		if step == stepLock {
			// Sent once the lock is taken, or failing with its error.
			var err error
			if typ, body, err = s.sendAfterLock(fw, typ, body); err != nil {
				return false, false
			}
			step = stepForward
		}
		s.gov.awaitCancel()
		// Flushed unless a whole message is next: the start of one may be
		// all the client sends until this one is answered.
		_, _, _, whole := nextMessage(fr.Ahead())
		if err := s.writeLocked(fw, typ, body, step.prefix(), !whole); err != nil {
			return false, false
		}
	}
}

// readBatch reads what the client sends behind a message that begins a
// batch (stepRead) until fromClient can tell whether the batch holds DDL,
// and returns what it decided then. err: the client's connection ended
// first (the message is not sent).
func (s *session) readBatch(fw *wire.FrameWriter, fr *wire.FrameReader, typ byte, body []byte) ([]byte, clientStep, error, error) {
	if err := s.flushLocked(fw); err != nil {
		return nil, 0, nil, err
	}
	step, perr := stepRead, error(nil)
	for step == stepRead {
		if fr.Room() == 0 {
			s.readAll = true
		} else if _, err := fr.ReadMore(); err != nil {
			return nil, 0, nil, err
		}
		body, step, perr = s.fromClient(typ, body, fr.Ahead())
		s.readAll = false
	}
	return body, step, perr, nil
}

// gateForwarding waits while the message of type typ must (gate), and
// returns with forwarding set: the client pump stores it before the gate
// looks at held, and the backend pump stores held before it looks at
// forwarding (holdIdleClient), so one of them sees the other. The caller
// clears it once fromClient has counted the message.
func (s *session) gateForwarding(fw *wire.FrameWriter, fr *wire.FrameReader, typ byte) error {
	for {
		s.forwarding.Store(true)
		ch := s.gate(typ)
		if ch == nil {
			return nil
		}
		s.forwarding.Store(false)
		if err := s.await(fw, fr, typ, ch); err != nil {
			return err
		}
	}
}

// writeLocked writes a client message to the backend (client pump), after
// prefix (the proxy's own Query ahead of it, if any), and flushes when flush
// is set.
func (s *session) writeLocked(fw *wire.FrameWriter, typ byte, body []byte, prefix []byte, flush bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(prefix) > 0 {
		if err := fw.WriteRaw(prefix); err != nil {
			return err
		}
	}
	if err := fw.Write(typ, body); err != nil {
		return err
	}
	if flush {
		return fw.Flush()
	}
	return nil
}

// await waits for ch (nil: nothing to wait for), after flushing what the
// client pump wrote: what ch waits for may need it.
func (s *session) await(fw *wire.FrameWriter, fr *wire.FrameReader, typ byte, ch chan struct{}) error {
	if ch == nil {
		return nil
	}
	if err := s.flushLocked(fw); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	default:
	}
	if typ == wire.MsgTerminate || fr.Room() == 0 || terminates(fr.Ahead()) {
		<-ch // nothing to watch for: the client said goodbye, or sent enough to hold
		return nil
	}
	return s.watchClient(fr, ch)
}

// errClientLeft: the client's connection ended, without a Terminate, while
// a message of its waited.
var errClientLeft = errors.New("the client left while its message waited")

// watchClient waits for ch while reading what the client sends behind the
// message that waits, so that a client that leaves is noticed now rather
// than once the statements ahead have ended, and what it still runs is
// cancelled (errClientLeft). A client whose connection ended after a
// Terminate said goodbye: its messages go on as they would have. The bytes
// read stay in fr for the relay, and once fr has no room left the watch
// stops.
func (s *session) watchClient(fr *wire.FrameReader, ch chan struct{}) error {
	stop, woken := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(woken)
		select {
		case <-ch:
		case <-stop:
		}
		_ = s.client.SetReadDeadline(time.Now()) // ends the read below
	}()
	var err error
	for err == nil {
		var n int
		if n, err = fr.ReadMore(); n == 0 && err == nil || terminates(fr.Ahead()) {
			break
		}
	}
	close(stop)
	<-woken
	_ = s.client.SetReadDeadline(time.Time{})
	if s.backToLoop.Load() {
		// The backend pump is handing the session back to the loop and
		// may have set its deadline before this one was cleared.
		_ = s.client.SetReadDeadline(time.Now())
	}
	if err != nil && !isTimeout(err) && !terminates(fr.Ahead()) {
		return errClientLeft
	}
	<-ch
	return nil
}

// terminates reports whether the messages in b (whole ones from its start)
// include a Terminate.
func terminates(b []byte) bool {
	for {
		typ, _, rest, whole := nextMessage(b)
		if !whole {
			return false
		}
		if typ == wire.MsgTerminate {
			return true
		}
		b = rest
	}
}

func (s *session) flushLocked(fw *wire.FrameWriter) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return fw.Flush()
}

// parameterStatus follows a setting the backend reports: the client
// encoding, the settings a blueprint version carries. It returns the FATAL
// that ends the session when the backend now reads statement text unlike
// the proxy's parser (reportedSetting).
func (s *session) parameterStatus(body []byte) *wire.PGError {
	name, value, ok := parameterStatus(body)
	if ok && name == "client_encoding" {
		s.otherEncoding.Store(!isUTF8(value))
	}
	if ok && s.captures() {
		s.mu.Lock()
		s.track.setting(name, value)
		s.mu.Unlock()
	}
	if fatal := reportedSetting(body); fatal != nil {
		s.mu.Lock()
		s.lost = true // the backend session is not reused
		s.mu.Unlock()
		return fatal
	}
	return nil
}

// fromBackend inspects one backend message and updates the session's state
// for it: the synchronous core of the backend pump. It returns what to do
// with the message, the body to forward (a refusal replaces the backend's
// error) and the DDL that committed at a ReadyForQuery, one list per
// transaction.
//
// own is a statement the proxy sends the backend on its own account after
// this message (rowguard.go); the event loop hands the session over before
// any message that calls for one.
func (s *session) fromBackend(typ byte, body []byte) (act relayAction, fwd []byte, ddl []captured, own string) {
	if s.swallow.Load() != swallowNone {
		// A setting the proxy's own ROLLBACK or abort changed back is
		// reported here.
		if typ == wire.MsgParameterStatus {
			if fatal := s.parameterStatus(body); fatal != nil {
				return relayAction{drop: true, end: true, out: wire.AppendErrorResponse(nil, fatal)}, body, nil, ""
			}
		}
		act, body, own = s.swallowed(typ, body)
		var ddl []captured
		if typ == wire.MsgReadyForQuery {
			s.mu.Lock()
			ddl = s.track.takeCommitted()
			s.mu.Unlock()
		}
		return act, body, ddl, own
	}
	if typ == wire.MsgNoticeResponse && s.captures() && s.journalNotice(body) {
		return relayAction{drop: true}, body, nil, "" // the workspace's DDL journal's, not the client's
	}
	switch typ {
	case 'D':
		s.mu.Lock()
		act = s.gov.dataRow()
		if act.cancel != "" {
			s.pend(1) // decided at the batch's ReadyForQuery
		}
		s.mu.Unlock()
	case 'E':
		severity, code, msg, err := wire.ParseErrorFields(body)
		refused := false
		if err == nil && code == "42601" {
			if rej := s.rewrite(msg); rej != nil {
				body = wire.AppendErrorResponse(nil, rej)[5:]
				severity, code = rej.Severity, rej.Code
				refused = true
			}
		}
		s.mu.Lock()
		// A concurrent index build that fails leaves an invalid index (but
		// when its name was taken: that index is another's). One the proxy
		// refused (its capture lock's wait failed, its node cannot reach the
		// leader) never ran: an invalid index of its name is another
		// session's, maybe a build still under way.
		if st, ok := s.track.failing(); ok && !refused && s.captures() && st.atOnce && st.kind == classify.DDL && code != "42P07" {
			s.failedBuild = st.text
		}
		s.track.errorResponse()
		act = s.gov.errorResponse(severity, code)
		if severity == "FATAL" || severity == "PANIC" {
			s.backendFatal = true // the client is told why the backend ends
		}
		s.resultIn()
		s.mu.Unlock()
	case 'C':
		tag, _ := wire.ParseCommandComplete(body)
		s.mu.Lock()
		if s.guarded && txnTag(tag) {
			s.guarded = false // the batch took over the proxy's transaction
		}
		if st, ok := s.track.commandComplete(tag); ok {
			s.noteMayWrite(st)
			if endsTx(st.kind) {
				s.gov.endsTx()
			}
		}
		act = s.gov.commandComplete(tag)
		s.resultIn()
		s.mu.Unlock()
	case 'V': // FunctionCallResponse: the function call's statement ended
		s.mu.Lock()
		s.noteCallWrote()
		act = s.gov.commandComplete(nil)
		s.mu.Unlock()
	case 'I':
		s.mu.Lock()
		s.track.emptyQuery()
		act = s.gov.emptyQuery()
		s.resultIn()
		s.mu.Unlock()
	case 's':
		s.mu.Lock()
		if st, ok := s.track.portalSuspended(); ok {
			s.noteMayWrite(st) // the rows so far ran what the statement calls
		}
		act = s.gov.portalSuspended()
		s.resultIn()
		s.mu.Unlock()
	case 'Z':
		status, _ := wire.ParseReadyForQuery(body)
		s.mu.Lock()
		if s.inflight > 0 {
			s.inflight--
		}
		if s.inflight == 0 {
			// The client is idle from here (closeIdleClients), however
			// long its batch ran.
			s.active.Store(time.Now().UnixNano())
		}
		s.txStatus = status
		final := s.finalFor(status, s.clientInflight()) // before the limiter forgets the batch
		ddl = s.track.readyForQuery(status)
		act = s.gov.readyForQuery(status)
		if s.holdRFQs > 0 {
			s.holdRFQs--
		}
		if final != "" {
			s.beginFinal(final)
			act.drop, own = true, final
		} else {
			s.guarded = false // a batch that ended the proxy's transaction itself
			if own = s.releaseCaptureLock(status); own == "" && s.holdRFQs == 0 {
				s.settle()
			}
		}
		s.mu.Unlock()
	case 'S':
		if fatal := s.parameterStatus(body); fatal != nil {
			return relayAction{drop: true, end: true, out: wire.AppendErrorResponse(nil, fatal)}, body, nil, ""
		}
		fallthrough
	default:
		s.mu.Lock()
		switch typ {
		case '1': // ParseComplete
			s.track.answered('P')
		case '2': // BindComplete
			s.track.answered('B')
		case '3': // CloseComplete
			s.track.answered('C')
		case 'T', 'n': // RowDescription, NoData: a Describe's answer
			s.track.answered('D')
		}
		act = s.gov.other(typ)
		s.mu.Unlock()
	}
	return act, body, ddl, own
}

// backendToClient forwards backend frames, rewriting sentinel errors.
func (s *session) backendToClient() {
	fr := s.bc.Reader
	fw := wire.NewFrameWriter(s.client)
	defer fw.Flush()
	forLoop := false
	defer func() { s.pumpStopped(forLoop) }()
	// clientFailed reports whether a failed write to the client ends the
	// pump. A session that captures DDL reads on instead, until the relay
	// stops it: what is in flight may commit, and is then recorded. So does
	// one whose guarded batch is to be committed (commitDue). Once this pump
	// stops, nothing reads the backend: a client pump blocked writing to it
	// (a client that sent while it did not read, then left) would wait for
	// good, so the backend's writes fail from then on.
	clientFailed := func() bool {
		if s.captures() || s.commitDue() {
			return false
		}
		_ = s.bc.Conn.SetWriteDeadline(time.Now())
		return true
	}
	for {
		typ, body, err := fr.Next()
		if err != nil {
			// The backend went away (or the relay stopped this pump).
			_ = fw.Flush()
			if !s.closing.Load() {
				s.backendLost()
			}
			return
		}
		act, body, ddl, own := s.fromBackend(typ, body)
		if len(ddl) > 0 && s.captures() {
			// Each transaction that committed is a version of its own.
			var notice *wire.PGError
			for _, tx := range ddl {
				if n := s.recordVersion(tx); notice == nil {
					notice = n
				}
			}
			if data := s.dataNotDeployed(); notice == nil {
				notice = data
			}
			if notice != nil {
				if err := fw.WriteRaw(wire.AppendNoticeResponse(nil, notice)); err != nil && clientFailed() {
					return
				}
			}
		}
		if typ == wire.MsgReadyForQuery && s.captures() {
			if notice := s.dropFailedBuild(); notice != nil {
				if err := fw.WriteRaw(wire.AppendNoticeResponse(nil, notice)); err != nil && clientFailed() {
					return
				}
			}
		}
		if err := s.gov.forward(fw, typ, body, act); err != nil && clientFailed() {
			return
		}
		if act.end {
			_ = fw.Flush()
			s.client.Close()
			s.bc.Conn.Close()
			return
		}
		if own != "" {
			if err := fw.Flush(); err != nil && clientFailed() {
				return
			}
			if err := s.sendOwn(own); err != nil {
				s.bc.Conn.Close() // the next read ends the relay as a lost backend
			}
		}
		if fr.Buffered() == 0 {
			if err := fw.Flush(); err != nil && clientFailed() {
				return
			}
			if typ == wire.MsgReadyForQuery && s.goBackToLoop() {
				forLoop = true
				return
			}
		}
	}
}

// commitDue reports whether a guarded batch the client synced runs, or the
// proxy's COMMIT after it: PostgreSQL would commit that batch whether or not
// its client reads the answers, so a failed write to the client does not
// stop the backend pump before the COMMIT is sent and answered.
func (s *session) commitDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.guarded && !s.unsynced || s.swallow.Load() == swallowFinal && s.final == guardCommit
}

// pumpStopped lets go of what waits for the backend pump, which has
// stopped: a client pump waiting for a ReadyForQuery, or for the capture
// lock, must not wait on. A pump that stopped for the event loop (forLoop)
// lets go of nothing: the session was quiet then (quietForLoop), and what
// the client pump began since, before it saw the hand-back (a guarded
// batch, whose hold makes a Terminate behind it wait for the proxy's
// COMMIT), is the loop's to end.
func (s *session) pumpStopped(forLoop bool) {
	if forLoop {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle()
	if s.lockTaken != nil {
		s.lockAnswered(wire.NewError("FATAL", "08006", "connection to the database backend was lost"))
	}
}

// goBackToLoop stops the backend pump at a quiet ReadyForQuery of a
// session the loop handed over, and wakes the client pump to hand it back.
func (s *session) goBackToLoop() bool {
	s.mu.Lock()
	ok := s.quietForLoop()
	s.mu.Unlock()
	if ok {
		_ = s.client.SetReadDeadline(time.Now())
	}
	return ok
}

// backendLost tells the client its backend connection failed, and ends the
// client connection.
func (s *session) backendLost() {
	s.mu.Lock()
	s.lost = true
	told := s.backendFatal
	s.mu.Unlock()
	if !told { // one FATAL: after the backend's own, none of the proxy's
		_ = wire.WriteError(s.client, wire.NewError("FATAL", "08006", "connection to the database backend was lost"))
	}
	s.client.Close()
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
