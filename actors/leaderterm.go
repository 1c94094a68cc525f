package actors

import (
	"context"
	"sync"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors/backend"
	"tdb/fsm"
)

// leaderTerm hands out the context of this node's time as leader. It ends
// within poll of isLeader turning false, so that work in flight on a
// backend (a provisioning whose call is slow to answer, a drop) stops when
// the node is deposed, instead of acting for a leader that no longer is
// one while the next leader acts on the same backend.
//
// A node frozen (SIGSTOP, a VM pause) while it leads still takes itself for
// the leader as it resumes, until raft tells it otherwise: for that, the
// context carries the term's backend.Fence, which makes a backend the next
// leader has acted on refuse or terminate the work's connections.
type leaderTerm struct {
	isLeader func() bool
	poll     time.Duration
	// fence tells the fence of the term this node leads in; nil, or a
	// fence without cluster ID, leaves the work unfenced.
	fence func() backend.Fence
	// confirm lets the term's work take back a fence above its term when a
	// quorum confirms its leadership (backend.WithLeaderConfirm); nil: it
	// is refused there.
	confirm backend.LeaderConfirm

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	fenced backend.Fence // ctx's fence
}

// termFence is the fence of the term this node leads in, from raft's
// current term and the state's cluster ID; nil when term is nil.
func termFence(f *fsm.FSM, term func() uint64) func() backend.Fence {
	if term == nil {
		return nil
	}
	return func() backend.Fence { return backend.Fence{Cluster: f.ClusterID(), Term: term()} }
}

// defaultLeaderPoll is how often work in flight checks, by default, that
// its node still leads.
const defaultLeaderPoll = 100 * time.Millisecond

// startLeaderTerm returns a leaderTerm whose watch runs on wg until ctx
// ends; fence and confirm may be nil.
func startLeaderTerm(ctx context.Context, wg *sync.WaitGroup, isLeader func() bool, fence func() backend.Fence,
	confirm backend.LeaderConfirm, poll time.Duration) *leaderTerm {
	l := &leaderTerm{isLeader: isLeader, fence: fence, confirm: confirm, poll: poll}
	wg.Add(1)
	go func() { defer wg.Done(); l.watch(ctx) }()
	return l
}

// context returns the current term's context, under parent; a new term
// starts when the last one has ended. The raft term is read before
// leadership: raft makes a leader a follower before it takes a later term,
// so a node that still leads after the read led in the term read (or a
// later one), and never works under the term of the next leader.
func (l *leaderTerm) context(parent context.Context) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil || l.ctx.Err() != nil {
		l.ctx, l.cancel = context.WithCancel(parent)
		l.fenced = backend.Fence{}
		if l.fence != nil {
			f := l.fence()
			l.fenced = f
			l.ctx = backend.WithLeaderConfirm(backend.WithFence(l.ctx, f), l.confirm)
			if !l.isLeader() {
				l.cancel()
			}
		}
	}
	return l.ctx
}

// fenceChanged reports whether the fence is no longer the current
// context's: the node lost and won leadership again between two polls, or
// the cluster's ID was recorded during the term (a new cluster's first).
func (l *leaderTerm) fenceChanged() bool {
	if l.fence == nil {
		return false
	}
	f := l.fence()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctx != nil && l.ctx.Err() == nil && f != l.fenced
}

// end ends the current term, if any.
func (l *leaderTerm) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
}

// watch ends the current term whenever isLeader is false, or its fence is
// another, checking every poll, until ctx ends.
func (l *leaderTerm) watch(ctx context.Context) {
	t := time.NewTicker(l.poll)
	defer t.Stop()
	defer l.end()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !l.isLeader() || l.fenceChanged() {
			l.end()
		}
	}
}

// fencedOut reports whether err ended leader work because a later leader
// has fenced the backend at url: the work was refused there
// (backend.ErrFenced), or its connection was terminated by the fence's
// raise, which a fresh check tells. Such work is left to whoever leads, as
// when its term's context ends: a failure recorded now could refuse the
// next leader's result.
func fencedOut(ctx context.Context, url string, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, backend.ErrFenced) {
		return true
	}
	if _, ok := backend.FenceOf(ctx); !ok || ctx.Err() != nil {
		return false
	}
	return errors.Is(backend.CheckFence(ctx, url), backend.ErrFenced)
}
