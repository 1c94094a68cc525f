package actors

import (
	"testing"
	"time"

	"tdb/fsm"
)

// TestLocalBan: a node bans an IP on its own count at the threshold, within
// the window, for the base ban length.
func TestLocalBan(t *testing.T) {
	p := NewPolicies(PolicyConfig{})
	set := fsm.ClusterSettings{AuthFailThreshold: 3, AuthFailWindowSec: 60, BanSec: 30}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := func(at time.Duration) time.Time { return p.localFailed("10.0.0.1", t0.Add(at), set) }
	if !fail(0).IsZero() || !fail(time.Second).IsZero() {
		t.Fatal("banned below the threshold")
	}
	if until := fail(2 * time.Second); !until.Equal(t0.Add(32 * time.Second)) {
		t.Fatalf("third failure: banned until %v", until)
	}
	if got := p.localBan("10.0.0.1", t0.Add(10*time.Second)); got.IsZero() {
		t.Fatal("not banned during the ban")
	}
	if got := p.localBan("10.0.0.2", t0.Add(10*time.Second)); !got.IsZero() {
		t.Fatal("another IP is banned")
	}
	if got := p.localBan("10.0.0.1", t0.Add(33*time.Second)); !got.IsZero() {
		t.Fatal("still banned after the ban")
	}
	// A new window after the ban: failures spread wider than the window
	// never add up.
	for i := range 5 {
		if until := fail(time.Duration(40+61*i) * time.Second); !until.IsZero() {
			t.Fatalf("failure %d, one per window: banned", i)
		}
	}
	// Off when the cluster's threshold is 0.
	off := fsm.ClusterSettings{AuthFailWindowSec: 60, BanSec: 30}
	for range 10 {
		if !p.localFailed("10.0.0.3", t0, off).IsZero() {
			t.Fatal("banned with the threshold off")
		}
	}
}
