package actors

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"tdb/fsm"
	"tdb/wire"
	"tdb/wire/classify"
	"tdb/wire/evloop"
)

// session is a logged-in client relayed to one backend connection.
//
// Refused statements never reach the backend as themselves: the proxy sends
// a statement that fails to parse and names a sentinel, and rewrites the
// backend's syntax error into the refusal. The backend thus produces the
// error at exactly the place in the message stream where the refused
// statement stood, with PostgreSQL's own transaction semantics (an aborted
// transaction block, skipping to Sync in the extended protocol).
type session struct {
	proxy *Proxy
	loop  *evloop.Loop // the event loop that relays it (Proxy.register); nil: goroutines
	// loopIndex is loop's place in Proxy.loops, -1 without one.
	loopIndex int
	login     identity
	key       cancelKey

	client net.Conn
	// bc is the backend session (connection, pid, cancel secret, address);
	// nil until a lazily attached session's first message. Set under mu.
	bc     *BackendConn
	pid    uint32 // the process id announced in BackendKeyData (the backend's, or lazyPID)
	params map[string]string
	// attach logs in to the backend at the client's first message (lazy
	// attach); nil once attached, or when the session attached at login.
	attach func(ctx context.Context) (*BackendConn, error)

	nonce    string
	mu       sync.Mutex
	seq      int
	injected map[string]refusal // sentinel -> the error the client sees
	inflight int                // Query/Sync messages awaiting ReadyForQuery
	txStatus byte               // from the backend's last ReadyForQuery
	lost     bool               // the backend connection failed
	// backendFatal: the backend sent a FATAL error (it ends the connection)
	backendFatal bool
	unsynced     bool              // extended-protocol messages sent since the last Sync
	track        *tracker          // statements in flight, for DDL capture
	names        map[string]string // statement and portal names seen (see name)
	gov          *governor         // limits and query log (enforce.go); nil: none
	closing      atomic.Bool       // the relay is ending on purpose
	revoked      atomic.Bool       // closed for its revoked key (endRevoked)
	active       atomic.Int64      // unix nanos of the client's last message
	raw          net.Conn          // the client connection as accepted, for the idle janitor
	// one holds the statement of the text inspect classified last, when the
	// fast path did: the client pump is done with it before the next message.
	one [1]classify.Statement
	// lastText is the last statement text the client sent (see text).
	lastText string
	// allowed is the text inspect let through last, and allowedAs its
	// classification: inspect's answer depends only on the text and the
	// login, so a driver that sends the same unnamed Parse for each
	// execution has it classified and guarded once.
	allowed   string
	allowedAs classify.Result

	// The row-limit guard (rowguard.go), under mu unless atomic.
	guarded   bool          // the current batch runs in a transaction the proxy opened
	final     string        // the proxy's statement after the batch, while it runs
	rollbacks int           // ROLLBACKs sent to leave the guarded transaction
	swallow   atomic.Uint32 // which of the proxy's exchanges the backend answers next
	pending   chan struct{} // closed when the client's next batch may go
	held      atomic.Bool   // pending is set
	// forwarding: the client pump is handling a message it found no
	// reason to hold (gate), until the session's state counts it
	// (releaseCaptureLock).
	forwarding atomic.Bool
	// settingsSync: the extended-protocol batch in progress may change a
	// setting (mayChangeSettings); its Sync holds the next batch.
	settingsSync bool
	// batchWrites, batchRows: the extended-protocol batch in progress has
	// bound a statement that may write, one that may return rows (kept
	// only with a row limit; see commitRefusal).
	batchWrites, batchRows bool
	// batchExits: the batch in progress has bound a COMMIT, ROLLBACK,
	// ROLLBACK TO or PREPARE TRANSACTION, which end an aborted state.
	batchExits bool
	// batchRan: the extended-protocol batch in progress has sent an
	// Execute (endAnsweredBatch).
	batchRan bool
	// captureLocked: the session holds the capture lock (capturelock.go)
	captureLocked bool
	// lockTaken is closed when the lock statement is answered; lockErr is why
	// the lock was not taken (capturelock.go).
	lockTaken chan struct{}
	lockErr   *wire.PGError
	// journalPending: the lock statement's answer says the workspace's DDL
	// journal holds DDL that committed and may not be recorded, which the
	// session records before its batch runs; journalDone are the capture
	// ids recorded since the lock was taken, whose journal rows the lock's
	// release deletes (journal.go). journalHeld: a version the journal
	// holds was not recorded, and the session records none after it until
	// the journal has been read under the capture lock (recordVersion).
	journalPending bool
	journalDone    []string
	journalHeld    bool
	// unlockFailed: the exchange giving the lock back failed (a cancel hit
	// it); unlockTries counts the times it was sent again.
	unlockFailed bool
	unlockTries  int
	holdRFQs     int // ReadyForQuery messages until pending may settle
	// waited: the message being handled again waited for the batches in
	// flight before it once already (client pump only; rowguard.go)
	waited bool
	// readAll: the client pump can read no more of the batch the message
	// being handled again begins (its buffer is full): decide without the
	// rest (client pump only; batchHoldsDDL)
	readAll bool
	// otherEncoding: the backend reads statement text in a client_encoding
	// other than UTF8 (as it last reported), so DDL text captured as the
	// proxy reads it would not be what the workspace ran (guard.go).
	otherEncoding atomic.Bool
	// failedBuild: a CREATE INDEX CONCURRENTLY of this capturing session
	// failed, and may have left an invalid index no version makes, which
	// the relay drops before the batch's ReadyForQuery (relay.go).
	failedBuild string
	// wmu orders the goroutine relay's writes to the backend: the client
	// pump's and the proxy's own statements the backend pump sends.
	wmu sync.Mutex
	// reloop: the goroutine relay took the session over from the event
	// loop, and hands it back once what sent it out is done (loop.go).
	reloop bool
	// backToLoop: the backend pump stopped at a quiet ReadyForQuery for
	// that; the client pump hands the session over.
	backToLoop atomic.Bool

	// Cancels (under mu): cancelled says a CancelRequest was sent to the
	// backend for this client; released, that the backend session is being
	// given up, after which none is sent; cancels counts those on their way.
	cancelled bool
	released  bool
	cancels   sync.WaitGroup
}

// text returns the statement text b as a string: the last one's own when b
// repeats it. A driver that sends an unnamed Parse of the same text for each
// execution (pgbench -M extended, JDBC below its prepare threshold) then
// costs no copy; the query log keeps the string either way. A text over
// maxKeptText is not kept: an idle session would hold it.
func (s *session) text(b []byte) string {
	if string(b) == s.lastText {
		return s.lastText
	}
	if len(b) > maxKeptText {
		return string(b)
	}
	s.lastText = string(b)
	return s.lastText
}

// maxKeptText bounds the statement text a session keeps between messages.
const maxKeptText = 4 << 10

const sentinelPrefix = "tdb_refused_"

// refusal is what a sentinel statement stands for.
type refusal struct {
	err *wire.PGError
	// ignored says that PostgreSQL would not have run the refused text in
	// an aborted transaction: it would have answered 25P02 instead of err.
	ignored bool
}

// refuse registers a refusal and returns the sentinel statement to send.
func (s *session) refuse(err *wire.PGError, ignored bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	name := sentinelPrefix + s.nonce + "_" + strconv.Itoa(s.seq)
	if len(s.injected) >= 256 { // refusals the backend skipped (after an earlier error)
		clear(s.injected)
	}
	if s.injected == nil {
		s.injected = map[string]refusal{}
	}
	s.injected[name] = refusal{err: err, ignored: ignored}
	return name
}

// ignoredWhenAborted says whether PostgreSQL, sent the text r was read from
// in an aborted transaction, would answer 25P02 instead of the proxy's
// refusal err. It reads the text first (its encoding, its syntax), then
// refuses all but a first COMMIT, ROLLBACK, ROLLBACK TO or PREPARE
// TRANSACTION (which would run, and the refusal of a later statement stand).
func ignoredWhenAborted(r classify.Result, err *wire.PGError) bool {
	switch err.Code {
	case "22021", "42601", "54000", "54001": // about the text itself
		return false
	}
	return len(r.Statements) == 0 || !exitKind(r.Statements[0].Kind)
}

// endsTx reports whether a statement of kind k ends the transaction when
// it completes, and with it the transaction's portals.
func endsTx(k classify.Kind) bool {
	return k == classify.Commit || k == classify.Rollback || k == classify.PrepareTxn
}

// exitKind reports whether PostgreSQL runs a statement of kind k in an
// aborted transaction: COMMIT, ROLLBACK, ROLLBACK TO, PREPARE TRANSACTION.
func exitKind(k classify.Kind) bool {
	switch k {
	case classify.Commit, classify.Rollback, classify.RollbackTo, classify.PrepareTxn:
		return true
	}
	return false
}

// inAbortedTransaction is PostgreSQL's answer to a statement other than
// COMMIT or ROLLBACK in a transaction that an error aborted.
func inAbortedTransaction() *wire.PGError {
	return wire.NewError("ERROR", "25P02", "current transaction is aborted, commands ignored until end of transaction block")
}

// rewrite returns the refusal a backend syntax error stands for, if any.
// The error comes back after the ReadyForQuery of the batch before the
// refused one, so txStatus is the state the refused text met: an error
// before it in its own batch would have made the backend skip it, and a
// refusal behind a COMMIT or ROLLBACK of its batch is not ignored
// (batchExits).
func (s *session) rewrite(message string) *wire.PGError {
	i := strings.Index(message, sentinelPrefix+s.nonce+"_")
	if i < 0 {
		return nil
	}
	name := message[i:]
	if j := strings.IndexByte(name, '"'); j >= 0 {
		name = name[:j]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.injected[name]
	if !ok {
		return nil
	}
	delete(s.injected, name)
	if e.ignored && s.txStatus == 'E' {
		return inAbortedTransaction()
	}
	return e.err
}

// inspect classifies a statement (simple Query or Parse text) and decides
// whether it may go to the backend; a non-nil error is the refusal, and
// ignored says whether PostgreSQL would have answered 25P02 instead in an
// aborted transaction (ignoredWhenAborted).
func (s *session) inspect(sql string) (r classify.Result, rej *wire.PGError, ignored bool) {
	if r, rej = s.check(sql); rej != nil {
		return classify.Result{}, rej, ignoredWhenAborted(r, rej)
	}
	// Asked of every text with DDL, never remembered with check's verdict.
	if s.ddlUnrecordable(r) {
		rej = leaderLostDDL()
		return classify.Result{}, rej, ignoredWhenAborted(r, rej)
	}
	return r, nil, false
}

// check is inspect's decision; with a refusal, r is what was read of the
// text, if anything.
func (s *session) check(sql string) (classify.Result, *wire.PGError) {
	if sql != "" && sql == s.allowed {
		return s.allowedAs, nil
	}
	// The remembered result may point into s.one, which ClassifyIn rewrites.
	s.allowed, s.allowedAs = "", classify.Result{}
	if !utf8.ValidString(sql) {
		return classify.Result{}, notUTF8()
	}
	r := s.proxy.classes.ClassifyIn(sql, &s.one)
	switch {
	case r.TooComplex:
		return classify.Result{}, wire.NewError("ERROR", "54001", "statement is too complex to analyse")
	case r.TooLong:
		return classify.Result{}, wire.NewError("ERROR", "54000",
			"query text of %d bytes holds a statement the proxy cannot analyse: longer than %d bytes, and only the parser can read it; send it in smaller statements", len(sql), classify.MaxParsed)
	case r.Unparsed:
		return classify.Result{}, unparsedRefusal(r)
	case r.HasCopy():
		return r, wire.NewError("ERROR", "0A000", "COPY is not supported through the proxy; use tdb workspaces import-full or INSERT statements")
	case s.login.kind == fsm.KindTenant && r.HasDDL():
		return r, wire.NewError("ERROR", "42501", "DDL not allowed on tenant databases, use workspace mode")
	}
	s.captureTypeBlocks(&r)
	if rej := s.guard(sql, r); rej != nil {
		return r, rej
	}
	if rej := s.paramsInDDL(r); rej != nil {
		return r, rej
	}
	if len(sql) <= maxKeptText {
		s.allowed, s.allowedAs = sql, r
	}
	return r, nil
}

// useBackend makes bc this session's backend connection. A session that
// attached at login announces the backend's own pid; a lazy one keeps the
// pid it announced before it had a backend.
func (s *session) useBackend(bc *BackendConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bc, s.params = bc, bc.Params
	s.otherEncoding.Store(!isUTF8(bc.Params["client_encoding"]))
	for _, name := range []string{"TimeZone", "DateStyle", "IntervalStyle"} {
		s.track.setting(name, bc.Params[name])
	}
	s.track.settingsKnown()
	if s.pid == 0 {
		s.pid = bc.PID
	}
}

// attachOnFirstMessage waits for the client's first message and logs in to
// the backend for it (lazy attach). The ParameterStatus values that differ
// from those announced at login go to the client first. It reports whether
// the relay may start: not when the client left (or sent Terminate) before
// its first statement, or the backend refused.
func (s *session) attachOnFirstMessage(ctx context.Context, fr *wire.FrameReader) bool {
	typ, err := fr.Peek()
	if err != nil || typ == wire.MsgTerminate {
		return false
	}
	bc, err := s.attach(ctx)
	if err != nil {
		s.proxy.cfg.Logf("proxy: attach %s: %v", s.login.database, err)
		_ = wire.WriteError(s.client, err)
		return false
	}
	announced := s.params
	s.useBackend(bc)
	s.attach = nil
	buf, _ := appendParameterStatus(nil, bc.Params, announced)
	if len(buf) > 0 {
		if _, err := s.client.Write(buf); err != nil {
			if s.release() {
				s.closeBackend()
			} else {
				s.proxy.park(bc) // idle and untouched: still clean
			}
			return false
		}
	}
	return true
}

// relay pumps frames both ways until either side ends, from the proxy's
// event loop where it can and by a goroutine per direction where it cannot
// (or from the message on that the loop hands back); then runs when the
// session is over. While the loop relays the session no goroutine waits for
// it: relay returns, and then runs on the goroutine the loop starts when the
// session leaves it. A backend session left idle and healthy goes back to
// the pool, reset; any other is closed.
func (s *session) relay(ctx context.Context, then func()) {
	if s.attach != nil && s.loop != nil && s.park(ctx, then) {
		return
	}
	s.relayFrom(ctx, wire.NewFrameReader(s.client, 0), then)
}

// relayFrom relays the session from fr on: a lazily attached session first
// waits for the client's first message and attaches a backend for it.
func (s *session) relayFrom(ctx context.Context, fr *wire.FrameReader, then func()) {
	if s.attach != nil && !s.attachOnFirstMessage(ctx, fr) {
		s.client.Close()
		then()
		return
	}
	if loop := s.loop; loop != nil && !s.captures() && s.enterLoop(ctx, loop, fr, then, "loop") {
		return
	}
	s.proxy.cfg.Policy.metrics().Relay("goroutine")
	s.relayGoroutines(ctx, fr, then)
}

// relayGoroutines relays with a goroutine per direction until either side
// ends, or until a session the event loop handed over can go back to it;
// then runs when the session is over.
func (s *session) relayGoroutines(ctx context.Context, fr *wire.FrameReader, then func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.backendToClient()
	}()
	clientGone, back := s.clientToBackend(fr)
	if back {
		<-done // the backend pump stopped at the ReadyForQuery
		_ = s.client.SetReadDeadline(time.Time{})
		s.backToLoop.Store(false)
		if s.enterLoop(ctx, s.loop, fr, then, "return") {
			return
		}
		s.mu.Lock()
		s.reloop = false // the loop refused it: goroutines to the end
		s.mu.Unlock()
		s.relayGoroutines(ctx, fr, then)
		return
	}
	defer then()
	s.mu.Lock()
	busy := s.inflight > 0 || s.unsynced
	ownCommit := s.onlyOwnCommitInFlight()
	cancel := clientGone && busy && !ownCommit
	s.mu.Unlock()
	if cancel {
		s.cancelRunning(ctx)
	}
	if busy && (s.captures() || ownCommit) {
		// DDL in flight may commit (a client that sent it and Terminate,
		// or left while it waited for the capture lock): the backend pump
		// reads on to its end, recording it, before the backend goes. So
		// does the proxy's COMMIT of a guarded batch, which the backend
		// pump may not have written yet.
		s.client.Close()
		s.drainInflight(done)
	}
	s.mu.Lock()
	busy = s.inflight > 0 || s.unsynced
	reusable := !busy && s.txStatus == 'I' && !s.lost
	s.mu.Unlock()
	s.closing.Store(true)
	if reusable {
		_ = s.bc.Conn.SetReadDeadline(time.Now()) // stop the backend pump, keep the connection
	} else {
		s.closeBackend()
	}
	<-done
	s.client.Close()
	if !reusable {
		return
	}
	_ = s.bc.Conn.SetReadDeadline(time.Time{})
	s.finish(ctx, false, true)
}

// maxCaptureDrain bounds how long a session whose client left waits for
// the DDL it had in flight.
const maxCaptureDrain = time.Hour

// drainInflight waits until nothing the client sent is in flight, or the
// backend pump ended (done), bounded by maxCaptureDrain.
func (s *session) drainInflight(done <-chan struct{}) {
	deadline := time.Now().Add(maxCaptureDrain)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		quiet := s.inflight == 0
		s.mu.Unlock()
		if quiet {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cancelRunning cancels what the backend still runs for a client that left.
// The cancel goes out even when ctx has ended (the node stopping, which
// closes every client): a statement left running would hold its locks and
// its backend until it ends on its own.
func (s *session) cancelRunning(ctx context.Context) {
	s.mu.Lock()
	if s.gov != nil {
		s.gov.lim.clientLeft()
	}
	s.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	s.cancelBackend(cctx)
	cancel()
}

// finish ends a session whose pumps have stopped: the client connection
// closes, and the backend session goes back to the pool if it is idle,
// healthy and whole (no byte of its stream left unread), or is closed.
func (s *session) finish(ctx context.Context, clientGone, whole bool) {
	s.mu.Lock()
	busy := s.inflight > 0 || s.unsynced
	reusable := whole && !busy && s.txStatus == 'I' && !s.lost
	cancel := clientGone && busy && !s.onlyOwnCommitInFlight()
	s.mu.Unlock()
	if cancel {
		s.cancelRunning(ctx)
	}
	s.client.Close()
	// No cancel may reach the next owner of this backend session.
	s.proxy.unregister(s.key)
	if s.release() {
		reusable = false
	}
	if !reusable {
		s.closeBackend()
		return
	}
	if err := s.bc.Reset(10 * time.Second); err != nil {
		s.proxy.cfg.Logf("proxy: reset backend session %d for the pool: %v", s.bc.PID, err)
		s.closeBackend()
		return
	}
	s.proxy.park(s.bc)
}

// release stops cancels for this client (the backend session may go to
// another) and waits for those on their way. It reports whether any was
// sent: PostgreSQL acts on a cancel when its signal arrives, which may be
// after the statement it was meant for has ended, so such a backend session
// is closed rather than pooled, where the signal could end the next
// client's statement.
func (s *session) release() (cancelled bool) {
	s.mu.Lock()
	s.released = true
	cancelled = s.cancelled
	s.mu.Unlock()
	s.cancels.Wait()
	return cancelled
}

// closeBackend ends the backend session with a Terminate.
func (s *session) closeBackend() {
	_ = s.bc.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.bc.Conn.Write([]byte{'X', 0, 0, 0, 4})
	s.bc.Conn.Close()
}

// cstring2 returns the first two NUL-terminated strings of a message body
// (Bind: portal and statement; Execute and Close: the name), as slices of it.
func cstring2(b []byte) ([]byte, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil
	}
	first, rest := b[:i], b[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return first, nil
	}
	return first, rest[:j]
}

// maxNames bounds the names a session keeps for name.
const maxNames = 256

// name returns a statement or portal name as a string, without allocating
// for one the session has seen: a client binds and executes the same few
// prepared statements over and over (under s.mu).
func (s *session) name(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if n, ok := s.names[string(b)]; ok {
		return n
	}
	n := string(b)
	if s.names == nil || len(s.names) >= maxNames {
		s.names = make(map[string]string)
	}
	s.names[n] = n
	return n
}

// cancelBackend sends a CancelRequest for this session's backend connection.
func (s *session) cancelBackend(ctx context.Context) {
	s.mu.Lock()
	bc := s.bc
	if bc == nil || s.released {
		// Lazy attach: nothing runs yet. Released: the backend session may
		// be the next client's.
		s.mu.Unlock()
		return
	}
	s.cancelled = true
	s.cancels.Add(1)
	s.mu.Unlock()
	defer s.cancels.Done()
	netw, addr, pid, secret := bc.Net, bc.Addr, bc.PID, bc.Secret
	var d net.Dialer
	conn, err := d.DialContext(ctx, netw, addr)
	if err != nil {
		s.proxy.cfg.Logf("proxy: cancel: dial backend %s: %v", addr, err)
		return
	}
	defer conn.Close()
	msg := make([]byte, 12, 12+len(secret))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(secret)))
	binary.BigEndian.PutUint32(msg[4:], 80877102)
	binary.BigEndian.PutUint32(msg[8:], pid)
	msg = append(msg, secret...)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(msg); err != nil {
		return
	}
	// PostgreSQL closes the connection after reading a cancel request; wait
	// for that so the cancel is delivered before we return.
	var b [1]byte
	_, _ = conn.Read(b[:])
}

// parseBody builds a Parse message body for a statement with no parameter types.
func parseBody(name, sql string) []byte {
	b := make([]byte, 0, len(name)+len(sql)+4)
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, sql...)
	b = append(b, 0, 0, 0)
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func itoa(i int) string { return strconv.Itoa(i) }
