package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"
)

// Fault kinds, chosen with the run's seed.
const (
	faultKillLeader        = "kill-leader"        // kill -9 the leader, restart it after a while
	faultStopNode          = "stop-node"          // SIGSTOP a random node, SIGCONT it after a while
	faultPartitionLeader   = "partition-leader"   // cut the leader's raft links to both others
	faultPartitionFollower = "partition-follower" // cut a follower's raft links to both others
)

var allFaults = []string{faultKillLeader, faultStopNode, faultPartitionLeader, faultPartitionFollower}

// Fault is one injected fault, for the report.
type Fault struct {
	Kind   string        `json:"kind"`
	Node   string        `json:"node"`
	Role   string        `json:"role"` // leader | follower at injection
	At     time.Duration `json:"at_ns"`
	Healed time.Duration `json:"healed_ns"`
}

// runFaults injects faults until ctx ends: a quiet gap, a fault held for a
// while, the heal, a wait for the cluster to have a leader again. Every
// fault is healed before it returns.
func (r *runner) runFaults(ctx context.Context) {
	rng := rand.New(rand.NewPCG(r.cfg.seed, 1))
	kinds := r.cfg.faults
	for sleepCtx(ctx, jitter(rng, r.cfg.quiet/2, r.cfg.quiet)) {
		kind := kinds[rng.IntN(len(kinds))]
		leader := r.c.leader(context.Background())
		if leader == nil {
			r.say("no leader right now; fault %s postponed", kind)
			continue
		}
		var target *member
		role := "leader"
		switch kind {
		case faultKillLeader, faultPartitionLeader:
			target = leader
		case faultPartitionFollower:
			target, role = r.follower(rng, leader), "follower"
		case faultStopNode:
			target = r.c.members[rng.IntN(len(r.c.members))]
			if target != leader {
				role = "follower"
			}
		}
		hold := jitter(rng, r.cfg.hold/2, r.cfg.hold)
		f := Fault{Kind: kind, Node: target.name, Role: role, At: r.hist.now()}
		switch kind {
		case faultKillLeader:
			r.say("fault: kill -9 %s (%s); restart in %s", target.name, role, hold.Round(time.Millisecond))
			r.c.kill9(target)
		case faultStopNode:
			r.say("fault: SIGSTOP %s (%s) for %s", target.name, role, hold.Round(time.Millisecond))
			r.c.signal(target, syscall.SIGSTOP)
		case faultPartitionLeader, faultPartitionFollower:
			r.say("fault: partition %s (%s) from %v for %s", target.name, role, r.others(target), hold.Round(time.Millisecond))
			r.c.net.isolate(target.name, r.c.names())
		}
		sleepCtx(context.Background(), hold) // always heal, even when the run is ending
		switch kind {
		case faultKillLeader:
			if err := r.c.start(target); err != nil {
				r.say("heal: restart %s: %v", target.name, err)
			} else {
				r.say("heal: restarted %s", target.name)
			}
		case faultStopNode:
			r.c.signal(target, syscall.SIGCONT)
			r.say("heal: SIGCONT %s", target.name)
		default:
			r.c.net.heal()
			r.say("heal: partition of %s lifted", target.name)
		}
		f.Healed = r.hist.now()
		r.mu.Lock()
		r.faults = append(r.faults, f)
		r.mu.Unlock()
		r.waitRecovered(30 * time.Second)
	}
}

// follower picks a random member other than leader.
func (r *runner) follower(rng *rand.Rand, leader *member) *member {
	var fs []*member
	for _, mb := range r.c.members {
		if mb != leader {
			fs = append(fs, mb)
		}
	}
	return fs[rng.IntN(len(fs))]
}

func (r *runner) others(mb *member) []string {
	return slices.DeleteFunc(r.c.names(), func(n string) bool { return n == mb.name })
}

// waitRecovered waits, bounded, until every member answers and one of them
// is the leader.
func (r *runner) waitRecovered(limit time.Duration) {
	start := time.Now()
	for time.Since(start) < limit {
		leaders, up := 0, 0
		for _, mb := range r.c.members {
			if st, err := r.c.status(context.Background(), mb); err == nil {
				up++
				if st.Role == "leader" {
					leaders++
				}
			}
		}
		if up == len(r.c.members) && leaders == 1 {
			r.say("recovered: %d nodes up, one leader (%s)", up, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.say("not recovered after %s", limit)
}

// say prints a line with the run's elapsed time.
func (r *runner) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "[%7.2fs] %s\n", r.hist.now().Seconds(), fmt.Sprintf(format, args...))
}
