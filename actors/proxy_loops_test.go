package actors

import (
	"testing"

	"tdb/wire/evloop"
)

// TestPickLoopTakesTurns: new sessions are given the proxy's loops in turn.
func TestPickLoopTakesTurns(t *testing.T) {
	if !evloop.Supported() {
		t.Skip("no event loop on this platform")
	}
	p := NewProxy(ProxyConfig{RelayLoops: 3})
	defer func() {
		for _, l := range p.loops {
			l.Close()
		}
	}()
	if len(p.loops) != 3 {
		t.Fatalf("%d loops, want 3", len(p.loops))
	}
	for i := range 7 {
		if got, want := p.pickLoop(), p.loops[i%3]; got != want {
			t.Fatalf("session %d was given loop %p, want %p", i, got, want)
		}
	}
	if p := NewProxy(ProxyConfig{GoroutineRelay: true, RelayLoops: 3}); p.pickLoop() != nil {
		t.Fatal("a goroutine-relay proxy gave a session a loop")
	}
}
