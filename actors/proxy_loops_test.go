package actors

import (
	"os"
	"testing"

	"tdb/wire/evloop"
)

// TestPickLoopTakesTurns: new sessions are given the proxy's loops in turn.
func TestPickLoopTakesTurns(t *testing.T) {
	if !evloop.Supported() {
		if os.Getenv("TDB_REQUIRE_ALL") != "" {
			t.Fatal("TDB_REQUIRE_ALL is set but this platform has no epoll (CI runs on Linux)")
		}
		t.Skip("no event loop on this platform (TDB_REQUIRE_ALL=1 makes this a failure)")
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
