package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tdb/fsm"
)

// TestSuperviseNeverRunsAJobTwice: a runner told to stop (its node stopped
// leading) keeps its job until it has returned, however long it takes to
// wind down, so the node leading again does not start a second runner of
// the job beside it, and its return does not end the runner after it.
func TestSuperviseNeverRunsAJobTwice(t *testing.T) {
	var leader atomic.Bool
	leader.Store(true)
	a := &LeaderActor{FSM: fsm.New(), IsLeader: leader.Load, Logf: t.Logf, Resync: 5 * time.Millisecond, LeaderPoll: 5 * time.Millisecond}
	a.defaults()
	var mu sync.Mutex
	now, most, started := 0, 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.supervise(ctx, func(*fsm.State) []string { return []string{"job"} }, func(rctx context.Context, id string) {
			mu.Lock()
			now++
			started++
			most = max(most, now)
			mu.Unlock()
			<-rctx.Done()
			time.Sleep(150 * time.Millisecond) // a slow wind-down: a copy's rollback
			mu.Lock()
			now--
			mu.Unlock()
		})
	}()
	runs := func() int {
		mu.Lock()
		defer mu.Unlock()
		return started
	}
	for round := 1; round <= 3; round++ {
		for runs() < round {
			time.Sleep(time.Millisecond)
		}
		leader.Store(false)
		time.Sleep(50 * time.Millisecond) // passes see the node deposed
		leader.Store(true)
	}
	cancel()
	<-done
	if most != 1 {
		t.Fatalf("%d runners of one job at once, want 1", most)
	}
}
