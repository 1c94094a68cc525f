package actors

import (
	"context"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
)

// superviseJobs runs one runner per active job while this node leads, and
// stops them all when it no longer does, until ctx ends. active lists the
// job ids to run (under the FSM's read lock); the list is re-read after
// every change and every resync tick. A runner that returns is started again
// at the next pass if its job is still active. It is the supervisor of the
// leader-run actors (deployer, importer): their progress lives in the FSM,
// so a new leader resumes where the old one stopped.
func superviseJobs(ctx context.Context, f *fsm.FSM, isLeader func() bool, resync time.Duration,
	active func(s *fsm.State) []string, run func(ctx context.Context, id string)) {
	var mu sync.Mutex
	running := map[string]context.CancelFunc{}
	stop := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		if cancel := running[id]; cancel != nil {
			cancel()
			delete(running, id)
		}
	}
	stopAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for id, cancel := range running {
			cancel()
			delete(running, id)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		changed := f.Changed()
		if isLeader() {
			var ids []string
			f.View(func(s *fsm.State) { ids = active(s) })
			sort.Strings(ids)
			for _, id := range ids {
				mu.Lock()
				if running[id] != nil {
					mu.Unlock()
					continue
				}
				rctx, cancel := context.WithCancel(ctx)
				running[id] = cancel
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer stop(id)
					run(rctx, id)
				}()
			}
		} else {
			stopAll()
		}
		select {
		case <-ctx.Done():
			stopAll()
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// leaderDefaults fills the settings the leader-run actors share.
func leaderDefaults(resync *time.Duration, logf *func(string, ...any), now *func() time.Time) {
	if *resync <= 0 {
		*resync = 2 * time.Second
	}
	if *logf == nil {
		*logf = log.Printf
	}
	if *now == nil {
		*now = time.Now
	}
}

// recordResult commits a tenant result of a leader-run job; it reports
// whether the work may go on. Business failures (the result is already
// final, the job finished) stop the work; other failures are logged (what
// and args say what was recorded) and paused on for backoff, so that the
// runner does not spin when it retries. When ctx has ended nothing is
// recorded: the next leader takes over from the FSM.
func recordResult(ctx context.Context, p Proposer, cmd fsm.CommandType, res any, backoff time.Duration,
	logf func(string, ...any), what string, args ...any) bool {
	if ctx.Err() != nil {
		return false
	}
	_, _, err := p.Apply(ctx, cmd, res)
	if err == nil {
		return true
	}
	var fe *fsm.Error
	if !errors.As(err, &fe) {
		logf(what+": %v", append(args, err)...)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
	return false
}
