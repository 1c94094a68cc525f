package actors

import (
	"context"
	"strconv"
	"time"

	"tdb/wire"
)

// Capture in commit order. Two sessions of one tenant workspace (on any
// nodes) could record their DDL out of commit order: an ALTER recorded
// before the CREATE it depends on, which every tenant then fails on. So a
// session takes a workspace-wide lock (a PostgreSQL advisory lock in the
// workspace's database) before its first DDL statement of a transaction,
// and gives it back only once the transaction has ended and its DDL is
// recorded: another session's DDL waits for it. The lock is taken by a
// Query sent ahead of the client's batch (its answer not relayed) where the
// batch begins with nothing else in flight; DDL pipelined behind other
// batches is not ordered.

// captureLockKey names the advisory lock, in the workspace's database.
const captureLockKey = 0x7464625f63617074 // "tdb_capt"

var (
	lockMessage = wire.AppendQuery(nil, "SELECT pg_catalog.pg_advisory_lock("+strconv.FormatInt(captureLockKey, 10)+")")
	unlockSQL   = "SELECT pg_catalog.pg_advisory_unlock(" + strconv.FormatInt(captureLockKey, 10) + ")"
)

// takeCaptureLock decides whether a batch that holds DDL takes the capture
// lock ahead of it (under s.mu): in a capturing workspace, when the session
// does not hold it and nothing else is in flight.
func (s *session) takeCaptureLock(hasDDL bool) bool {
	if !hasDDL || !s.captures() || s.captureLocked || s.inflight > 0 || s.unsynced || s.swallow.Load() != swallowNone {
		return false
	}
	s.captureLocked = true
	s.inflight++ // the lock Query's ReadyForQuery
	s.swallow.Store(swallowLock)
	return true
}

// releaseCaptureLock starts giving the lock back after the ReadyForQuery
// that ended the transaction (under s.mu, after the ReadyForQuery left
// inflight); it returns the statement to send, or "". With another batch
// of the client's in flight the lock stays until that one's end: the
// answer to the release must not come between its answers. The client's
// next batch waits for that answer.
func (s *session) releaseCaptureLock(status byte) string {
	if !s.captureLocked || status != 'I' || s.clientInflight() > 0 {
		return ""
	}
	s.captureLocked = false
	s.inflight++
	s.swallow.Store(swallowUnlock)
	s.pend(0)
	return unlockSQL
}

// holdsCaptureLock reports whether the session holds the capture lock (the
// event loop hands the session over at the ReadyForQuery that may end it).
func (s *session) holdsCaptureLock() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.captureLocked
}

// maxCaptureLockWait bounds how long a client's cancel waits for its
// session to take the capture lock.
const maxCaptureLockWait = time.Hour

// awaitCaptureLock waits, bounded by ctx, while the session waits for the
// capture lock: a client's cancel meant for its statement must not cancel
// the proxy's lock Query instead (the statement would then run).
func (s *session) awaitCaptureLock(ctx context.Context) {
	for s.swallow.Load() == swallowLock {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}
