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
