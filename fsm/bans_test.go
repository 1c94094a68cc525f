package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"
)

func fail(at time.Time, counts ...any) *RecordAuthFailures {
	c := &RecordAuthFailures{At: at}
	for i := 0; i < len(counts); i += 2 {
		c.Failures = append(c.Failures, AuthFailure{IP: counts[i].(string), Count: int64(counts[i+1].(int))})
	}
	return c
}

func bansOf(v any) []Ban { return v.([]Ban) }

func bannedFor(h *harness, ip string, now time.Time) time.Duration {
	var until time.Time
	var ok bool
	h.f.View(func(s *State) { until, ok = s.BannedUntil(ip, now) })
	if !ok {
		return 0
	}
	return until.Sub(now)
}

func TestAuthBans(t *testing.T) {
	const ip = "203.0.113.7"
	sec := time.Second
	tests := []struct {
		name  string
		steps func(h *harness)
	}{
		{"below threshold: no ban", func(h *harness) {
			if b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 9))); len(b) != 0 {
				t.Fatalf("bans %v", b)
			}
			if d := bannedFor(h, ip, t0); d != 0 {
				t.Fatalf("banned for %v", d)
			}
		}},
		{"threshold within the window bans for ban_sec", func(h *harness) {
			h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 4))
			b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0.Add(30*sec), ip, 6, "198.51.100.1", 1)))
			if len(b) != 1 || b[0].IP != ip || !b[0].Until.Equal(t0.Add(90*sec)) {
				t.Fatalf("bans %+v", b)
			}
			if d := bannedFor(h, ip, t0.Add(43*sec)); d != 47*sec {
				t.Fatalf("banned for %v at +43s, want 47s", d)
			}
			if d := bannedFor(h, ip, t0.Add(90*sec)); d != 0 {
				t.Fatalf("still banned at the ban's end: %v", d)
			}
			if d := bannedFor(h, "198.51.100.1", t0.Add(30*sec)); d != 0 {
				t.Fatalf("other IP banned for %v", d)
			}
		}},
		{"failures spread past the window do not ban", func(h *harness) {
			h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 9))
			if b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0.Add(61*sec), ip, 9))); len(b) != 0 {
				t.Fatalf("bans %+v", b)
			}
		}},
		{"repeat offenders double up to max_ban_sec", func(h *harness) {
			at := t0
			var got []time.Duration
			for i := 0; i < 8; i++ {
				b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(at, ip, 10)))
				if len(b) != 1 {
					t.Fatalf("offense %d: bans %+v", i+1, b)
				}
				got = append(got, b[0].Until.Sub(at))
				at = b[0].Until.Add(sec)
			}
			want := []time.Duration{60 * sec, 120 * sec, 240 * sec, 480 * sec, 960 * sec, 1920 * sec, 3600 * sec, 3600 * sec}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("ban lengths %v, want %v", got, want)
			}
		}},
		{"failures during a ban neither extend it nor count", func(h *harness) {
			h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 10))
			if b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0.Add(10*sec), ip, 50))); len(b) != 0 {
				t.Fatalf("bans %+v", b)
			}
			if d := bannedFor(h, ip, t0.Add(10*sec)); d != 50*sec {
				t.Fatalf("banned for %v", d)
			}
		}},
		{"records are forgotten after window+max_ban without failures", func(h *harness) {
			h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 10, "198.51.100.1", 1))
			h.mustApply(CmdRecordAuthFailures, fail(t0.Add(3000*sec), "198.51.100.2", 1))
			h.mustApply(CmdRecordAuthFailures, fail(t0.Add(3661*sec), "198.51.100.3", 1))
			var n int
			var ok bool
			h.f.View(func(s *State) { n = s.Bans.Len(); _, ok = s.Bans.Lookup(ip) })
			if n != 2 || ok {
				t.Fatalf("len %d, %s remembered %v; want the two recent records", n, ip, ok)
			}
			// Forgotten: the next ban of ip is a first offense again.
			b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0.Add(3700*sec), ip, 10)))
			if len(b) != 1 || b[0].Offenses != 1 {
				t.Fatalf("bans %+v", b)
			}
		}},
		{"the table's clock never runs backwards", func(h *harness) {
			h.mustApply(CmdRecordAuthFailures, fail(t0.Add(100*sec), ip, 5))
			// A proposer with a slow clock: its failures count at the table's time.
			b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 5)))
			if len(b) != 1 || !b[0].Until.Equal(t0.Add(160*sec)) {
				t.Fatalf("bans %+v", b)
			}
		}},
		{"threshold 0 turns bans off", func(h *harness) {
			zero := int64(0)
			h.mustApply(CmdSetClusterSettings, &SetClusterSettings{AuthFailThreshold: &zero})
			if b := bansOf(h.mustApply(CmdRecordAuthFailures, fail(t0, ip, 1000))); len(b) != 0 {
				t.Fatalf("bans %+v", b)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.steps(newHarness(t)) })
	}
}

// TestAuthBanFlood: 100k distinct IPs failing keep the table at its cap, the
// least recent records go first, real offenders stay banned, and replicas
// (and a restored snapshot) agree.
func TestAuthBanFlood(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	apply := func(c *RecordAuthFailures) {
		a.mustApply(CmdRecordAuthFailures, c)
		b.mustApply(CmdRecordAuthFailures, c)
	}
	apply(fail(t0, "192.0.2.1", 10)) // a real offender, banned first
	const total, batch = 100_000, 1_000
	for i := 0; i < total; i += batch {
		c := &RecordAuthFailures{At: t0.Add(time.Duration(i/batch) * 200 * time.Millisecond)}
		for j := i; j < i+batch; j++ {
			c.Failures = append(c.Failures, AuthFailure{IP: fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255), Count: 1})
		}
		apply(c)
		if n := a.f.state.Bans.Len(); n > MaxAuthRecords {
			t.Fatalf("after %d IPs the table holds %d records, cap %d", i+batch, n, MaxAuthRecords)
		}
	}
	if n := a.f.state.Bans.Len(); n != MaxAuthRecords {
		t.Fatalf("table holds %d records, want the cap %d", n, MaxAuthRecords)
	}
	if d := bannedFor(a, "192.0.2.1", t0.Add(30*time.Second)); d != 30*time.Second {
		t.Fatalf("the offender banned first is banned for %v after the flood, want 30s", d)
	}
	if _, ok := a.f.state.Bans.Lookup("10.0.0.0"); ok {
		t.Fatalf("the least recent flood record survived")
	}
	if _, ok := a.f.state.Bans.Lookup(fmt.Sprintf("10.%d.%d.%d", (total-1)>>16&255, (total-1)>>8&255, (total-1)&255)); !ok {
		t.Fatalf("the most recent flood record was evicted")
	}
	ha, _ := a.f.Hash()
	hb, _ := b.f.Hash()
	if ha != hb {
		t.Fatalf("replicas diverged: %s vs %s", ha, hb)
	}

	// Snapshot and restore keep every record, in order.
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	c := New()
	if err := c.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if hc, _ := c.Hash(); hc != ha {
		t.Fatalf("restored state differs")
	}
	// The restored table keeps evicting in the same order as the original.
	next := fail(t0.Add(time.Hour), "172.16.0.1", 1)
	a.mustApply(CmdRecordAuthFailures, next)
	ch := &harness{t: t, f: c, index: a.index - 1}
	ch.mustApply(CmdRecordAuthFailures, next)
	ha, _ = a.f.Hash()
	if hc, _ := c.Hash(); hc != ha {
		t.Fatalf("restored replica diverged after one more command")
	}

	// Once the flood stops, everything is forgotten after the retention.
	a.mustApply(CmdRecordAuthFailures, fail(t0.Add(3*time.Hour), "172.16.0.2", 1))
	if n := a.f.state.Bans.Len(); n != 1 {
		t.Fatalf("after the retention the table holds %d records, want 1", n)
	}
}

// A batch proposed again, as a tracker does when its first proposal's
// outcome was unknown, counts once from log version 3 (before it, builds
// that do not know the field count it again, so all do); a node's batch
// IDs are remembered only so far, and survive a snapshot.
func TestAuthFailureBatchCountsOnce(t *testing.T) {
	const ip = "203.0.113.9"
	failures := func(h *harness) (n int64) {
		h.f.View(func(s *State) {
			r, _ := s.Bans.Lookup(ip)
			n = r.Failures
		})
		return n
	}
	batch := func(id string) *RecordAuthFailures {
		c := fail(t0, ip, 1)
		c.Node, c.Batch = "n1", id
		return c
	}
	h := newHarness(t)
	h.mustApply(CmdRecordAuthFailures, batch("b1"))
	h.mustApply(CmdRecordAuthFailures, batch("b1"))
	if n := failures(h); n != 2 {
		t.Fatalf("log version 1: %d failures, want 2", n)
	}
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 3})
	h.mustApply(CmdRecordAuthFailures, batch("b2"))
	if b := bansOf(h.mustApply(CmdRecordAuthFailures, batch("b2"))); len(b) != 0 {
		t.Fatalf("a batch again made bans %+v", b)
	}
	if n := failures(h); n != 3 {
		t.Fatalf("log version 3, a batch twice: %d failures, want 3", n)
	}
	other := batch("b2")
	other.Node = "n2"
	h.mustApply(CmdRecordAuthFailures, other)
	if n := failures(h); n != 4 {
		t.Fatalf("another node's batch of the same ID: %d failures, want 4", n)
	}
	var snap bytes.Buffer
	h.f.View(func(s *State) {
		if err := json.NewEncoder(&snap).Encode(s.Bans); err != nil {
			t.Fatal(err)
		}
	})
	var restored BanTable
	if err := json.Unmarshal(snap.Bytes(), &restored); err != nil || !restored.seenBatch("n1", "b2") {
		t.Fatalf("a snapshot forgot the batch: %v", err)
	}
	for i := range recentBatches {
		restored.seenBatch("n1", fmt.Sprint("x", i))
	}
	if restored.seenBatch("n1", "b2") || len(restored.batches["n1"]) != recentBatches {
		t.Fatalf("batch IDs kept: %v", restored.batches["n1"])
	}
}
