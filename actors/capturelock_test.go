package actors

import "testing"

// TestCaptureUnlockWaitsForAMessageLetThrough: the backend pump does not
// send the capture lock's unlock while the client pump handles a message
// it let through before the session was held (forwarding): that message
// may begin a batch whose answers would come before the unlock's. The
// session is then not left held, and keeps the lock until a later batch
// ends; without such a message the unlock goes and the client is held.
func TestCaptureUnlockWaitsForAMessageLetThrough(t *testing.T) {
	s := &session{track: newTracker(), txStatus: 'I', captureLocked: true}
	s.forwarding.Store(true)
	if sql := s.releaseCaptureLock('I'); sql != "" {
		t.Fatalf("unlock %q sent while a message was let through", sql)
	}
	if !s.captureLocked || s.held.Load() || s.pending != nil || s.inflight != 0 {
		t.Fatalf("after a skipped unlock: locked %v, held %v, inflight %d", s.captureLocked, s.held.Load(), s.inflight)
	}
	s.forwarding.Store(false)
	if sql := s.releaseCaptureLock('I'); sql != unlockSQL {
		t.Fatalf("unlock %q, want %q", sql, unlockSQL)
	}
	if s.captureLocked || !s.held.Load() || s.inflight != 1 || s.swallow.Load() != swallowUnlock {
		t.Fatalf("after the unlock: locked %v, held %v, inflight %d", s.captureLocked, s.held.Load(), s.inflight)
	}
	// The client pump's side: a message that finds the session held waits.
	if ch := s.gate('P'); ch == nil {
		t.Fatal("a new batch is not held behind the unlock")
	}
}

// TestRowLimitAbortGoesWhileAMessageWaits: the row limit's abort is sent at
// the ReadyForQuery of the statement that passed the limit even while the
// client pump, with forwarding still set, has a message waiting for it
// (stepWait): that message must run in the aborted transaction, not in one
// whose writes a COMMIT would keep.
func TestRowLimitAbortGoesWhileAMessageWaits(t *testing.T) {
	s := &session{gov: &governor{lim: newLimiter(nil)}, track: newTracker(), txStatus: 'T'}
	s.gov.lim.overRows = 5
	s.inflight = 1 // the SELECT that passed the limit
	s.forwarding.Store(true)
	s.mu.Lock()
	s.pend(s.clientInflight()) // the client's COMMIT waits behind it
	s.mu.Unlock()
	if _, _, _, own := s.fromBackend('Z', []byte{'T'}); own != guardAbort {
		t.Fatalf("own exchange %q, want the abort; the waiting message is held: %v", own, s.held.Load())
	}
	if !s.held.Load() {
		t.Fatal("the waiting message was let go before the abort")
	}
}
