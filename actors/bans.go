package actors

import (
	"context"
	"encoding/json"
	"log"
	"sort"
	"time"

	"tdb/fsm"
	"tdb/metrics"
)

// BanTrackerConfig configures a node's ban tracker.
type BanTrackerConfig struct {
	NodeID  string
	Propose Proposer
	Now     func() time.Time
	Logf    func(format string, args ...any)
	Metrics *metrics.Metrics

	// Batches reports whether the cluster takes batch IDs (log version 3);
	// nil: it does not.
	Batches func() bool

	Interval   time.Duration // batching period (default 200 ms)
	MaxPending int           // distinct IPs held between batches (default 10,000)
	MaxBatch   int           // distinct IPs per raft command (default 1,000)
	// MaxRetry is how long a batch whose proposal failed is proposed again
	// before it is dropped (default 10 min): its failures are long out of
	// any window by then, and the cluster forgets a gone node's batch IDs
	// (fsm.CompactState) only a day after its last batch, so a batch
	// proposed again always meets its ID if it was committed.
	MaxRetry time.Duration
}

// BanTracker is the actor that turns failed logins on this node into raft
// commands: failures are counted per IP and proposed in batches, one command
// per interval rather than one write per failure. The FSM decides the bans.
type BanTracker struct {
	cfg   BanTrackerConfig
	inbox chan string
	done  chan struct{}
}

// NewBanTracker returns a tracker; Run runs it.
func NewBanTracker(cfg BanTrackerConfig) *BanTracker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10_000
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1_000
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = 10 * time.Minute
	}
	return &BanTracker{cfg: cfg, inbox: make(chan string, 4096), done: make(chan struct{})}
}

// Fail reports a failed login from ip. It never blocks the connection: when
// the inbox is full the failure is dropped, logged by the metric.
func (b *BanTracker) Fail(ip string) {
	select {
	case b.inbox <- ip:
	case <-b.done:
	default:
		b.cfg.Metrics.Dropped("auth_failures")
	}
}

// Run collects failures and proposes them every interval until ctx ends.
func (b *BanTracker) Run(ctx context.Context) {
	defer close(b.done)
	batch := newFailBatch(b.cfg.MaxPending)
	var again *fsm.RecordAuthFailures // a batch to propose again
	var againSince time.Time          // when again was first proposed
	tick := time.NewTicker(b.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ip := <-b.inbox:
			if !batch.add(ip, 1) {
				b.cfg.Metrics.Dropped("auth_failures")
			}
		case <-tick.C:
			// A batch whose proposal failed is proposed again, as it was,
			// before any other: it may have been committed all the same
			// (the leader changed while committing it), and with its ID the
			// FSM then counts it once.
			if again != nil && time.Since(againSince) > b.cfg.MaxRetry {
				b.cfg.Logf("bans: dropped a batch of %d failed logins not committed in %s", len(again.Failures), b.cfg.MaxRetry)
				again = nil
			}
			if again != nil && b.propose(ctx, again) {
				again = nil
			}
			for again == nil && !batch.empty() {
				cmd := &fsm.RecordAuthFailures{Node: b.cfg.NodeID, Failures: batch.take(b.cfg.MaxBatch)}
				if b.cfg.Batches != nil && b.cfg.Batches() {
					cmd.Batch = randomHex(8)
				}
				if !b.propose(ctx, cmd) {
					again, againSince = cmd, time.Now()
				}
			}
		}
	}
}

// propose commits one batch, at the time now; it reports whether it was
// committed.
func (b *BanTracker) propose(ctx context.Context, cmd *fsm.RecordAuthFailures) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd.At = b.cfg.Now().UTC()
	v, _, err := b.cfg.Propose.Apply(cctx, fsm.CmdRecordAuthFailures, cmd)
	if err != nil {
		b.cfg.Metrics.BanBatch(false, 0)
		b.cfg.Logf("bans: record %d failed logins: %v", len(cmd.Failures), err)
		return false
	}
	bans, ok := v.([]fsm.Ban)
	if raw, forwarded := v.(json.RawMessage); !ok && forwarded {
		// Proposed on a follower: the leader's value comes back as JSON.
		if err := json.Unmarshal(raw, &bans); err != nil {
			b.cfg.Logf("bans: read the bans the batch made: %v", err)
		}
	}
	b.cfg.Metrics.BanBatch(true, len(bans))
	for _, ban := range bans {
		b.cfg.Logf("bans: %s banned until %s (offense %d)", ban.IP, ban.Until.Format(time.RFC3339), ban.Offenses)
	}
	return true
}

// failBatch is the tracker's synchronous core: failure counts per IP,
// bounded in distinct IPs.
type failBatch struct {
	max    int
	counts map[string]int64
}

func newFailBatch(max int) *failBatch { return &failBatch{max: max, counts: map[string]int64{}} }

// add counts n failures of ip; false when the batch is full and ip is new.
func (f *failBatch) add(ip string, n int64) bool {
	if _, ok := f.counts[ip]; !ok && len(f.counts) >= f.max {
		return false
	}
	f.counts[ip] += n
	return true
}

func (f *failBatch) empty() bool { return len(f.counts) == 0 }

// take removes up to n IPs, in IP order, and returns their counts.
func (f *failBatch) take(n int) []fsm.AuthFailure {
	ips := make([]string, 0, len(f.counts))
	for ip := range f.counts {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	if len(ips) > n {
		ips = ips[:n]
	}
	out := make([]fsm.AuthFailure, 0, len(ips))
	for _, ip := range ips {
		out = append(out, fsm.AuthFailure{IP: ip, Count: f.counts[ip]})
		delete(f.counts, ip)
	}
	return out
}
