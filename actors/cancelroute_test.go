package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRoutedCancelsAreBounded: cancel requests for keys this node does not
// hold (a CancelRequest needs no login) are routed to the other nodes at
// most maxRoutedCancels at once; the rest are dropped, as PostgreSQL drops
// a key it does not know, instead of each becoming calls between nodes.
func TestRoutedCancelsAreBounded(t *testing.T) {
	release := make(chan struct{})
	var running, calls, returned atomic.Int32
	p := NewProxy(ProxyConfig{GoroutineRelay: true, Logf: t.Logf, Cluster: ClusterHooks{
		RouteCancel: func(ctx context.Context, pid, secret uint32) {
			calls.Add(1)
			running.Add(1)
			<-release
			running.Add(-1)
		},
	}})
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p.cancelRequest(context.Background(), uint32(i), 7)
			returned.Add(1)
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for returned.Load() != n-maxRoutedCancels || running.Load() != maxRoutedCancels {
		if time.Now().After(deadline) {
			close(release)
			wg.Wait()
			t.Fatalf("%d routed at once, %d of %d returned at once; want %d routed and the rest dropped", calls.Load(), returned.Load(), n, maxRoutedCancels)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if calls.Load() != maxRoutedCancels {
		t.Fatalf("%d cancels routed, want %d", calls.Load(), maxRoutedCancels)
	}
	// Slots come back: the next one is routed.
	release = make(chan struct{})
	close(release)
	p.cancelRequest(context.Background(), 1, 7)
	if calls.Load() != maxRoutedCancels+1 {
		t.Fatal("a cancel after the others ended was not routed")
	}
}
