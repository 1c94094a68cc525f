package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tdb/fsm"
	"tdb/internal/syncbuf"
)

func TestFailBatch(t *testing.T) {
	b := newFailBatch(3)
	for _, ip := range []string{"10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if !b.add(ip, 1) {
			t.Fatalf("add %s refused", ip)
		}
	}
	if b.add("10.0.0.4", 1) {
		t.Fatal("a fourth distinct IP fit in a batch of 3")
	}
	if !b.add("10.0.0.1", 1) {
		t.Fatal("a known IP refused in a full batch")
	}
	got := b.take(2)
	if fmt.Sprint(got) != "[{10.0.0.1 2} {10.0.0.2 2}]" {
		t.Fatalf("take(2) = %v", got)
	}
	if got := b.take(10); fmt.Sprint(got) != "[{10.0.0.3 1}]" || !b.empty() {
		t.Fatalf("take(10) = %v", got)
	}
}

// fsmProposer commits commands straight into a real FSM, counting them.
type fsmProposer struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
	cmds  int
}

func (p *fsmProposer) Apply(_ context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	data, err := fsm.Encode(t, payload)
	if err != nil {
		return nil, 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.index++
	p.cmds++
	r := p.f.Apply(&raft.Log{Type: raft.LogCommand, Index: p.index, Data: data}).(fsm.Response)
	return r.Value, p.index, r.Err
}

// TestBanTrackerBatches: many failures become few raft commands, and the
// FSM bans the IP.
func TestBanTrackerBatches(t *testing.T) {
	p := &fsmProposer{f: fsm.New()}
	bt := NewBanTracker(BanTrackerConfig{Propose: p, Interval: 50 * time.Millisecond, Logf: t.Logf})
	ctx, cancel := context.WithCancel(context.Background())
	// The tracker logs through t: it must have stopped before the test ends.
	stopped := make(chan struct{})
	defer func() { cancel(); <-stopped }()
	go func() { defer close(stopped); bt.Run(ctx) }()
	const failures = 200
	for i := 0; i < failures; i++ {
		bt.Fail(fmt.Sprintf("192.0.2.%d", i%4))
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := p.f.WaitFor(wctx, func(s *fsm.State) bool {
		for i := 0; i < 4; i++ {
			if _, ok := s.BannedUntil(fmt.Sprintf("192.0.2.%d", i), time.Now()); !ok {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("IPs not banned: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmds >= failures/10 {
		t.Fatalf("%d failures took %d raft commands: not batched", failures, p.cmds)
	}
	t.Logf("%d failures, %d commands", failures, p.cmds)
}

// forwardedProposer answers as a follower's forwarding does: the value as
// its JSON.
type forwardedProposer struct{ *fsmProposer }

func (p forwardedProposer) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	v, index, err := p.fsmProposer.Apply(ctx, t, payload)
	if err != nil {
		return nil, index, err
	}
	raw, err := json.Marshal(v)
	return json.RawMessage(raw), index, err
}

// A follower's tracker logs the bans its batches made, as the leader's
// does: the value of a forwarded proposal comes back as JSON.
func TestBanTrackerLogsBansOnAFollower(t *testing.T) {
	var logs syncbuf.Buffer
	p := forwardedProposer{&fsmProposer{f: fsm.New()}}
	bt := NewBanTracker(BanTrackerConfig{Propose: p, Interval: 20 * time.Millisecond,
		Logf: func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	defer func() { cancel(); <-stopped }()
	go func() { defer close(stopped); bt.Run(ctx) }()
	for range 50 {
		bt.Fail("192.0.2.7")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !logs.Contains("bans: 192.0.2.7 banned until") {
		if time.Now().After(deadline) {
			t.Fatalf("no ban logged; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unknownProposer commits the first command into the FSM and then answers
// as a leader that lost its place while committing it; later ones commit.
type unknownProposer struct {
	*fsmProposer
	failed atomic.Bool
}

func (p *unknownProposer) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	v, index, err := p.fsmProposer.Apply(ctx, t, payload)
	if err == nil && p.failed.CompareAndSwap(false, true) {
		return nil, 0, errors.New("the raft leader changed while committing it: it may have been applied")
	}
	return v, index, err
}

// TestBanTrackerProposesABatchAgainAsItWas: a batch whose proposal's
// outcome was unknown is proposed again, as it was and with its ID, so
// that the FSM counts its failures once, and later failures come after.
func TestBanTrackerProposesABatchAgainAsItWas(t *testing.T) {
	p := &unknownProposer{fsmProposer: &fsmProposer{f: fsm.New()}}
	if _, _, err := p.fsmProposer.Apply(context.Background(), fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 3}); err != nil {
		t.Fatal(err)
	}
	bt := NewBanTracker(BanTrackerConfig{Propose: p, Interval: 20 * time.Millisecond, Logf: t.Logf, Batches: func() bool { return true }})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	defer func() { cancel(); <-stopped }()
	for range 3 {
		bt.Fail("192.0.2.77")
	}
	go func() { defer close(stopped); bt.Run(ctx) }()
	failures := func(s *fsm.State) int64 {
		r, _ := s.Bans.Lookup("192.0.2.77")
		return r.Failures
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for !p.failed.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	bt.Fail("192.0.2.77")
	if err := p.f.WaitFor(wctx, func(s *fsm.State) bool { return failures(s) >= 4 }); err != nil {
		t.Fatalf("the later failure was not recorded: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // a few more ticks
	p.f.View(func(s *fsm.State) {
		if n := failures(s); n != 4 {
			t.Fatalf("%d failures recorded, 4 happened", n)
		}
	})
}

// refusingProposer never commits a batch with a failure of ip.
type refusingProposer struct {
	*fsmProposer
	ip      string
	refused atomic.Int64
}

func (p *refusingProposer) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	if c, ok := payload.(*fsm.RecordAuthFailures); ok {
		for _, f := range c.Failures {
			if f.IP == p.ip {
				p.refused.Add(1)
				return nil, 0, errors.New("no raft leader")
			}
		}
	}
	return p.fsmProposer.Apply(ctx, t, payload)
}

// TestBanTrackerDropsABatchNeverCommitted: a batch whose proposal keeps
// failing is dropped after MaxRetry, and the failures after it are
// proposed: the cluster forgets a gone node's batch IDs a day after its
// last batch, so a batch proposed again must be proposed long before that.
func TestBanTrackerDropsABatchNeverCommitted(t *testing.T) {
	p := &refusingProposer{fsmProposer: &fsmProposer{f: fsm.New()}, ip: "192.0.2.1"}
	log := &syncbuf.Buffer{}
	bt := NewBanTracker(BanTrackerConfig{Propose: p, Interval: 10 * time.Millisecond, MaxRetry: 50 * time.Millisecond,
		Logf: func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) }, Batches: func() bool { return true }})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	defer func() { cancel(); <-stopped }()
	bt.Fail("192.0.2.1")
	go func() { defer close(stopped); bt.Run(ctx) }()
	for p.refused.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	bt.Fail("192.0.2.2")
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := p.f.WaitFor(wctx, func(s *fsm.State) bool { _, ok := s.Bans.Lookup("192.0.2.2"); return ok }); err != nil {
		t.Fatalf("the failures after a batch never committed were not proposed: %v", err)
	}
	if !log.Contains("bans: dropped a batch of 1 failed logins not committed in 50ms") {
		t.Fatalf("the drop was not logged: %s", log.String())
	}
}
