package actors

import (
	"context"
	"sync"
	"time"
)

// leaderTerm hands out the context of this node's time as leader. It ends
// within poll of isLeader turning false, so that work in flight on a
// backend (a provisioning whose call is slow to answer, a drop) stops when
// the node is deposed, instead of acting for a leader that no longer is
// one while the next leader acts on the same backend.
type leaderTerm struct {
	isLeader func() bool
	poll     time.Duration

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

// defaultLeaderPoll is how often work in flight checks, by default, that
// its node still leads.
const defaultLeaderPoll = 100 * time.Millisecond

// startLeaderTerm returns a leaderTerm whose watch runs on wg until ctx
// ends.
func startLeaderTerm(ctx context.Context, wg *sync.WaitGroup, isLeader func() bool, poll time.Duration) *leaderTerm {
	l := &leaderTerm{isLeader: isLeader, poll: poll}
	wg.Add(1)
	go func() { defer wg.Done(); l.watch(ctx) }()
	return l
}

// context returns the current term's context, under parent; a new term
// starts when the last one has ended.
func (l *leaderTerm) context(parent context.Context) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil || l.ctx.Err() != nil {
		l.ctx, l.cancel = context.WithCancel(parent)
	}
	return l.ctx
}

// end ends the current term, if any.
func (l *leaderTerm) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
}

// watch ends the current term whenever isLeader is false, checking every
// poll, until ctx ends.
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
		if !l.isLeader() {
			l.end()
		}
	}
}
