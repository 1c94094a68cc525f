package actors

import (
	"os"
	"slices"
	"testing"

	"tdb/wire/evloop"
)

// TestPickLoopSpills: new sessions go to the first loop until it relays
// spillAt of them, then to whichever loop relays fewest; a session that
// ends gives its place back.
func TestPickLoopSpills(t *testing.T) {
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
	var keys []cancelKey
	add := func(want int) {
		t.Helper()
		s := &session{pid: uint32(len(keys) + 1)}
		keys = append(keys, p.register(s))
		if s.loopIndex != want || s.loop != p.loops[want] {
			t.Fatalf("session %d was given loop %d, want %d (loads %v)", len(keys), s.loopIndex, want, p.loopLoad)
		}
	}
	for range spillAt {
		add(0)
	}
	for _, want := range []int{1, 2, 1, 2} {
		add(want)
	}
	p.unregister(keys[0]) // the first loop relays fewer than spillAt again
	add(0)
	add(1) // spilling: loads 16, 2, 2
	for _, k := range keys {
		p.unregister(k)
	}
	if !slices.Equal(p.loopLoad, []int{0, 0, 0}) {
		t.Fatalf("loads %v after every session ended", p.loopLoad)
	}
	g := NewProxy(ProxyConfig{GoroutineRelay: true, RelayLoops: 3})
	s := &session{}
	g.register(s)
	if s.loop != nil || s.loopIndex != -1 {
		t.Fatal("a goroutine-relay proxy gave a session a loop")
	}
}
