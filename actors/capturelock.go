package actors

import (
	"slices"
	"strconv"

	"tdb/actors/backend"
	"tdb/wire"
	"tdb/wire/classify"
)

// Capture in commit order. Two sessions of one tenant workspace (on any
// nodes) could record their DDL out of commit order: an ALTER recorded
// before the CREATE it depends on, which every tenant then fails on. So a
// session takes a workspace-wide lock (a PostgreSQL advisory lock in the
// workspace's database) before its first DDL statement of a transaction,
// and gives it back only once the transaction has ended and its DDL is
// recorded: another session's DDL waits for it. Where the client's batch
// begins with nothing else in flight, the proxy sends a statement that takes
// the lock (its answer not relayed) and holds the batch until it is taken.
// When taking it fails (lock_timeout, a deadlock, the client's cancel),
// the batch is not run: the client gets the lock's error, and a
// transaction it was in is aborted, as a DDL statement's own lock wait
// would have left it. A batch that holds DDL pipelined behind other
// batches of the client's waits for their answers, then takes the lock; an
// extended-protocol batch takes it ahead of its first message (a
// statement's, a Close's or a Describe's) when DDL comes later in it
// (batchHoldsDDL), reading on up to its Sync where the client writes it in
// parts. Only DDL behind a Flush or a COPY in a batch whose Sync has not
// arrived with its first message, or in a batch the row guard puts in the
// proxy's transaction, is not ordered. Sessions that capture are relayed by
// goroutines (the event loop cannot hold a batch).

// captureLockKey names the advisory lock, in the workspace's database.
const captureLockKey = backend.CaptureLockKey

var (
	lockSQL     = "SELECT pg_catalog.pg_advisory_lock(" + strconv.FormatInt(captureLockKey, 10) + ")"
	lockMessage = appendOwn(nil, lockSQL)
	// lockJournalMessage also asks whether the workspace's DDL journal
	// holds DDL that may not be recorded (journal.go).
	lockJournalMessage = appendOwn(nil, lockSQL+", "+backend.JournalPendingSQL)
	unlockSQL          = "SELECT pg_catalog.pg_advisory_unlock(" + strconv.FormatInt(captureLockKey, 10) + ")"
)

// takeCaptureLock decides whether a batch that holds DDL takes the capture
// lock ahead of it (under s.mu): in a capturing workspace, when the session
// does not hold it and nothing else is in flight. The batch then waits for
// lockTaken.
func (s *session) takeCaptureLock(hasDDL bool) bool {
	// In a failed transaction the lock statement would fail too, and refuse a
	// batch that may begin with its ROLLBACK: the backend answers it as
	// PostgreSQL would, and DDL after that ROLLBACK is not ordered.
	if !hasDDL || !s.captures() || s.captureLocked || s.inflight > 0 || s.unsynced || s.txStatus == 'E' ||
		s.swallow.Load() != swallowNone {
		return false
	}
	s.captureLocked = true
	s.inflight++ // the lock statement's ReadyForQuery
	s.swallow.Store(swallowLock)
	s.lockTaken, s.lockErr = make(chan struct{}), nil
	return true
}

// captureLockWaits reports whether a batch that holds DDL waits for the
// client's batches in flight before it takes the capture lock (under s.mu):
// the lock statement cannot go between their answers, and their DDL would
// otherwise run and commit without it. The message is then handled again
// with nothing in flight (stepWait), once: a batch still behind the proxy's
// own exchange after its wait goes without the lock, as before.
func (s *session) captureLockWaits(hasDDL bool) bool {
	if !hasDDL || !s.captures() || s.captureLocked || s.unsynced || s.waited || s.lost ||
		s.swallow.Load() != swallowNone || s.clientInflight() == 0 {
		return false
	}
	s.pend(s.clientInflight())
	return true
}

// captureStep decides how a message that may begin a batch goes with the
// capture lock (under s.mu): stepRead to read more of the batch first
// (batchHoldsDDL), stepWait to wait for the client's batches in flight
// (captureLockWaits), stepLock to take the lock ahead of it
// (takeCaptureLock), else stepForward. ddl: the message's own statement is
// DDL; ahead: what came behind it; consider false: the batch takes no lock
// (the row guard's, or refused).
func (s *session) captureStep(consider, ddl bool, ahead []byte) clientStep {
	if !consider {
		return stepForward
	}
	ddl, more := s.batchHoldsDDL(ddl, ahead)
	switch {
	case more:
		return stepRead
	case ddl && s.captureLockWaits(true):
		return stepWait
	case ddl && s.takeCaptureLock(true):
		return stepLock
	}
	return stepForward
}

// batchHoldsDDL reports whether a batch whose first message holds DDL (ddl)
// or, in a capturing session, whose later messages hold some, up to its
// Sync, takes the capture lock ahead of it (under s.mu). A driver's batch
// (pgx's SendBatch, a JDBC batch) often begins with a statement that is not
// DDL. more: the messages that arrived with the first end before its Sync
// and hold no Flush, so the client sends more of the batch before it waits
// for an answer (psycopg's pipeline writes each statement as it is queued,
// and the Sync last): the message is handled again once more has arrived
// (stepRead).
func (s *session) batchHoldsDDL(ddl bool, ahead []byte) (holds, more bool) {
	if ddl || s.unsynced || !s.captures() {
		return ddl, false
	}
	holds, more = s.scan().holdsDDL(ahead)
	return holds, more && !s.readAll
}

// holdsDDL reads the messages of an extended-protocol batch behind its
// first one, up to its Sync, and reports whether one parses DDL or binds a
// statement parsed as DDL (in the batch, or in an earlier one). more: they
// end before the Sync with no Flush or COPY among them, and tell nothing
// yet.
func (b batchScan) holdsDDL(ahead []byte) (holds, more bool) {
	var kept [4]string
	parsed := kept[:0] // statements the batch parses that are not DDL
	for {
		typ, body, next, whole := nextMessage(ahead)
		if !whole {
			return false, true
		}
		ahead = next
		switch typ {
		case wire.MsgSync, 'H':
			return false, false // the client may wait for answers here
		case 'E', 'D', 'C':
		case 'P':
			name, text, err := wire.ParseText(body)
			if err != nil {
				return false, false
			}
			r := b.classify(string(text))
			if r.HasDDL() {
				return true, false
			}
			if r.HasCopy() {
				return false, false // its client may wait for the CopyInResponse (or the refusal)
			}
			parsed = append(parsed, string(name))
		case 'B':
			_, stmt := cstring2(body)
			if !slices.Contains(parsed, string(stmt)) && boundStmt(b.prepared, string(stmt)).kind == classify.DDL {
				return true, false
			}
		default:
			return false, false // a Query or a FunctionCall is refused inside a batch
		}
	}
}

// lockAnswered ends the wait for the lock statement's answer (under s.mu): err
// is why the lock statement failed, nil when the lock was taken. A failed lock
// statement may still have taken the lock: a cancel (or a lock_timeout) that
// PostgreSQL sees just as the lock is granted fails the statement and keeps
// the session-level lock. So the session counts as holding it, and gives
// it back as after DDL, once the transaction has ended
// (releaseCaptureLock): an unlock of a lock not held changes nothing.
func (s *session) lockAnswered(err *wire.PGError) {
	if err != nil {
		s.lockErr = err
	}
	if s.lockTaken != nil {
		close(s.lockTaken)
		s.lockTaken = nil
	}
}

// sendAfterLock sends the capture lock's statement, waits for its answer, and
// returns the client's message to send after it (client pump): the message
// as it came when the lock was taken, or one that fails with the lock's
// error, or with leaderLostDDL when the node cannot reach the leader once it
// holds the lock (a Bind becomes a Parse, which the backend fails the same
// way; so do a Close and a Describe that begin a batch).
func (s *session) sendAfterLock(fw *wire.FrameWriter, typ byte, body []byte) (byte, []byte, error) {
	s.mu.Lock()
	taken := s.lockTaken
	s.mu.Unlock()
	// A limit's cancel still on its way (the last statement ended before
	// it came) would end the lock's wait, and fail the batch with 57014.
	s.gov.awaitCancel()
	msg := lockMessage
	if s.keepsJournal() {
		msg = lockJournalMessage
	}
	s.wmu.Lock()
	err := fw.WriteRaw(msg)
	if err == nil {
		err = fw.Flush()
	}
	s.wmu.Unlock()
	if err != nil {
		return 0, nil, err
	}
	if taken != nil {
		<-taken
	}
	s.mu.Lock()
	lerr, pending := s.lockErr, s.journalPending
	s.lockErr, s.journalPending = nil, false
	s.mu.Unlock()
	if lerr == nil && s.proxy.leaderUnconfirmed() {
		// The wait may have been long (another session's DDL held the
		// lock), and the node cut off from the leader meanwhile: the DDL
		// would commit and not be recorded.
		lerr = leaderLostDDL()
	}
	if lerr == nil && pending {
		// DDL that committed before (its node stopped before recording it)
		// is recorded ahead of this batch's.
		lerr = s.recoverJournal()
	}
	if lerr == nil {
		// The journal holds nothing left unrecorded: this session's
		// versions are recorded again as they commit (recordVersion).
		s.mu.Lock()
		s.journalHeld = false
		s.mu.Unlock()
		return typ, body, nil
	}
	sentinel := s.refuse(lerr, false) // a lock wait ran: the transaction was not aborted
	switch typ {
	case 'P':
		name, _ := cstring2(body)
		return 'P', parseBody(string(name), sentinel), nil
	case 'B', 'C', 'D': // a Close or Describe that begins a batch, as a Bind
		return 'P', parseBody(refusedBindName, sentinel), nil
	}
	return 'Q', append([]byte(sentinel), 0), nil
}

// refusedBindName names the statement a refused Bind is replaced with; its
// Parse fails, so no statement of that name is ever made (a Parse of the
// unnamed statement would drop the client's).
const refusedBindName = "tdb_refused_bind"

// releaseCaptureLock starts giving the lock back after the ReadyForQuery
// that ended the transaction (under s.mu, after the ReadyForQuery left
// inflight); it returns the statement to send, or "". With another batch
// of the client's in flight the lock stays until that one's end: the
// answer to the release must not come between its answers. The client's
// next batch waits for that answer.
func (s *session) releaseCaptureLock(status byte) string {
	// Nor while the client has begun another batch (messages without their
	// Sync, already at the backend): the release's answers would come
	// between theirs.
	if !s.captureLocked || status != 'I' || s.clientInflight() > 0 || s.unsynced {
		return ""
	}
	if !s.holdIdleClient() {
		return "" // the lock goes back after the client's new batch
	}
	s.captureLocked = false
	s.inflight++
	s.swallow.Store(swallowUnlock)
	return unlockSQL
}
