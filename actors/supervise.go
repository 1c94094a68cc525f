package actors

import (
	"context"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors/backend"
	"tdb/fsm"
)

// LeaderActor is what the leader-run actors (deployer, importer) share: the
// raft handles, and a supervisor that runs one runner per active job while
// this node leads. Their progress lives in the FSM, so a new leader resumes
// where the old one stopped.
type LeaderActor struct {
	FSM      *fsm.FSM
	Propose  Proposer
	IsLeader func() bool
	// Term is raft's current term, which fences the runners' work on
	// backends as the reconciler's (Reconciler.Term). Nil leaves it
	// unfenced.
	Term func() uint64
	// ConfirmLeader is the reconciler's (Reconciler.ConfirmLeader).
	ConfirmLeader backend.LeaderConfirm
	Logf          func(format string, args ...any)
	Now           func() time.Time
	Resync        time.Duration // rescan period, on top of change notifications [2 s]
	// LeaderPoll is how often the runners check that this node still
	// leads [100 ms]: a deposed node, cut off from the log, sees no change
	// of the state that would make it look sooner.
	LeaderPoll time.Duration
}

func (a *LeaderActor) defaults() {
	if a.Resync <= 0 {
		a.Resync = 2 * time.Second
	}
	if a.Logf == nil {
		a.Logf = log.Printf
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.LeaderPoll <= 0 {
		a.LeaderPoll = defaultLeaderPoll
	}
}

// inProgress lists the ids of the jobs (deployments, imports) in progress.
func inProgress[J any](jobs map[string]*J, status func(*J) string) []string {
	var ids []string
	for id, j := range jobs {
		if status(j) == fsm.DeploymentInProgress {
			ids = append(ids, id)
		}
	}
	return ids
}

// supervise runs one runner per active job while this node leads, and stops
// them all within LeaderPoll of its no longer leading, until ctx ends.
// active lists the job ids to run (under the FSM's read lock); the list is
// re-read after every change and every resync tick. A runner that returns
// is started again at the next pass if its job is still active.
func (a *LeaderActor) supervise(ctx context.Context, active func(s *fsm.State) []string, run func(ctx context.Context, id string)) {
	// running holds each job's runner until it has returned: a runner told
	// to stop keeps its place while it winds down, so the next pass does
	// not start a second one beside it, nor does its return end another's.
	type runner struct{ cancel context.CancelFunc }
	var mu sync.Mutex
	running := map[string]*runner{}
	stopAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range running {
			r.cancel()
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopAll()
	// A runner's copy still under way on a deposed node would otherwise go
	// on until the next resync, over the rows a newer import the next
	// leader made has copied since.
	term := startLeaderTerm(ctx, &wg, a.IsLeader, termFence(a.FSM, a.Term), a.ConfirmLeader, a.LeaderPoll)
	watchState(ctx, a.FSM, a.Resync, func() {
		if !a.IsLeader() {
			term.end()
			stopAll()
			return
		}
		lead := term.context(ctx)
		var ids []string
		a.FSM.View(func(s *fsm.State) { ids = active(s) })
		sort.Strings(ids)
		for _, id := range ids {
			mu.Lock()
			if running[id] != nil {
				mu.Unlock()
				continue
			}
			rctx, cancel := context.WithCancel(lead)
			me := &runner{cancel: cancel}
			running[id] = me
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					cancel()
					mu.Lock()
					if running[id] == me {
						delete(running, id)
					}
					mu.Unlock()
				}()
				run(rctx, id)
			}()
		}
	})
}

// watchState runs pass now, then again after every change of the state and
// every resync tick, until ctx ends: the loop of the actors that act on the
// replicated state.
func watchState(ctx context.Context, f *fsm.FSM, resync time.Duration, pass func()) {
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		changed := f.Changed()
		pass()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// recordResult commits a tenant result of a leader-run job; it reports
// whether the work may go on. Business failures (the result is already
// final, the job finished) stop the work; other failures are logged (what
// and args say what was recorded) and paused on for backoff, so that the
// runner does not spin when it retries. When ctx has ended nothing is
// recorded: the next leader takes over from the FSM.
func (a *LeaderActor) recordResult(ctx context.Context, cmd fsm.CommandType, res any, backoff time.Duration,
	what string, args ...any) bool {
	if ctx.Err() != nil {
		return false
	}
	_, _, err := a.Propose.Apply(ctx, cmd, res)
	if err == nil {
		return true
	}
	var fe *fsm.Error
	if !errors.As(err, &fe) {
		a.Logf(what+": %v", append(args, err)...)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
	return false
}
