package fsm

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// atVersion7 is seeded with the cluster at log version 7.
func atVersion7(t *testing.T) *harness {
	h := seeded(t)
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 7})
	return h
}

// TestCompactStateRemovesKeysRevokedBeforeItsTime: a key revoked before
// KeysRevokedBefore is gone, from its project and from bearer lookup (it
// is then refused as an unknown key); one revoked at that time or later,
// and a live one, stay.
func TestCompactStateRemovesKeysRevokedBeforeItsTime(t *testing.T) {
	const pid = "tdb_0000abcd"
	h := atVersion7(t)
	for _, id := range []string{"key_old", "key_new", "key_live"} {
		h.mustApply(CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey(id, RoleRead, ScopeProject), At: t0})
	}
	h.mustApply(CmdRevokeKey, &RevokeKey{ProjectID: pid, ID: "key_old", At: t0.Add(time.Hour)})
	h.mustApply(CmdRevokeKey, &RevokeKey{ProjectID: pid, ID: "key_new", At: t0.Add(2 * time.Hour)})

	keys := func() (ids []string) {
		h.f.View(func(s *State) {
			for _, id := range []string{"key_old", "key_new", "key_live"} {
				if s.Projects[pid].Keys[id] != nil && s.KeyByLookup("lookup-"+id) != nil {
					ids = append(ids, id)
				}
			}
		})
		return ids
	}
	// Not yet past its retention: revoked exactly at the cut-off.
	v := h.mustApply(CmdCompactState, &CompactState{At: t0.Add(9 * time.Hour), KeysRevokedBefore: t0.Add(time.Hour)})
	if v != (Compacted{}) || len(keys()) != 3 {
		t.Fatalf("compaction before the retention: %+v, keys %v", v, keys())
	}
	v = h.mustApply(CmdCompactState, &CompactState{At: t0.Add(9 * time.Hour), KeysRevokedBefore: t0.Add(time.Hour + time.Second)})
	if v != (Compacted{Keys: 1}) {
		t.Fatalf("compaction answered %+v, want one key", v)
	}
	if got := keys(); len(got) != 2 || got[0] != "key_new" || got[1] != "key_live" {
		t.Fatalf("keys after the compaction: %v", got)
	}
	h.f.View(func(s *State) {
		if s.KeyByLookup("lookup-key_old") != nil {
			t.Fatal("the removed key still authenticates by its lookup")
		}
	})
	// The ID is not taken up again by anything: revoking it says so.
	if r := h.apply(CmdRevokeKey, &RevokeKey{ProjectID: pid, ID: "key_old", At: t0.Add(10 * time.Hour)}); codeOf(r.Err) != CodeNotFound {
		t.Fatalf("revoking a removed key: %v", r.Err)
	}
	// Its removal survives a snapshot.
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if mustHash(t, g) != mustHash(t, h.f) {
		t.Fatal("a restored snapshot differs")
	}
	g.View(func(s *State) {
		if s.KeyByLookup("lookup-key_old") != nil || s.KeyByLookup("lookup-key_new") == nil {
			t.Fatal("the restored lookup index is wrong")
		}
	})
}

// TestCompactStateForgetsBatchesOfGoneNodes: the batch IDs of a node the
// command lists are forgotten once its last batch is older than the
// command's BatchesBefore, and only then; a node's batches from before log
// version 7 (no time) get the command's time first.
func TestCompactStateForgetsBatchesOfGoneNodes(t *testing.T) {
	const ip = "203.0.113.7"
	batch := func(node, id string, at time.Time) *RecordAuthFailures {
		c := fail(at, ip, 1)
		c.Node, c.Batch = node, id
		return c
	}
	nodes := func(h *harness) (out []BatchNode) {
		h.f.View(func(s *State) { out = s.Bans.BatchNodes() })
		return out
	}
	h := seeded(t)
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 6})
	h.mustApply(CmdRecordAuthFailures, batch("old", "b0", t0))
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 7})
	h.mustApply(CmdRecordAuthFailures, batch("gone", "b1", t0))
	h.mustApply(CmdRecordAuthFailures, batch("live", "b2", t0.Add(time.Minute)))
	if ns := nodes(h); len(ns) != 3 || !ns[0].Last.Equal(t0) || ns[1].Node != "live" || !ns[1].Last.Equal(t0.Add(time.Minute)) || !ns[2].Last.IsZero() {
		t.Fatalf("batch nodes: %+v", ns)
	}

	// The last batch of gone is not older than BatchesBefore: kept. old
	// has no time yet: it gets the command's.
	at := t0.Add(time.Hour)
	all := []string{"gone", "live", "old"}
	if v := h.mustApply(CmdCompactState, &CompactState{At: at, BatchNodes: all, BatchesBefore: t0}); v != (Compacted{}) {
		t.Fatalf("compacted %+v before any batch was old enough", v)
	}
	if ns := nodes(h); len(ns) != 3 || !ns[2].Last.Equal(at) {
		t.Fatalf("batch nodes: %+v", ns)
	}
	// A batch of gone's proposed again is still counted once.
	before := mustHash(t, h.f)
	if r := h.apply(CmdRecordAuthFailures, batch("gone", "b1", at)); r.Err != nil || len(bansOf(r.Value)) != 0 {
		t.Fatalf("%+v", r)
	}
	if mustHash(t, h.f) != before {
		t.Fatal("a batch proposed again counted again")
	}

	// gone's and live's last batches are older than BatchesBefore, and
	// only gone is listed.
	v := h.mustApply(CmdCompactState, &CompactState{At: at, BatchNodes: []string{"gone", "old"}, BatchesBefore: t0.Add(2 * time.Minute)})
	if v != (Compacted{BatchNodes: 1}) {
		t.Fatalf("compacted %+v, want one node", v)
	}
	if ns := nodes(h); len(ns) != 2 || ns[0].Node != "live" || ns[1].Node != "old" {
		t.Fatalf("batch nodes after the compaction: %+v", ns)
	}
	h.mustApply(CmdCompactState, &CompactState{At: at, BatchNodes: []string{"old"}, BatchesBefore: at.Add(time.Second)})
	if ns := nodes(h); len(ns) != 1 || ns[0].Node != "live" {
		t.Fatalf("batch nodes after the second compaction: %+v", ns)
	}
	// Before log version 7 batches were recorded without a time.
	g := seeded(t)
	g.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 6})
	g.mustApply(CmdRecordAuthFailures, batch("gone", "b1", t0))
	if ns := nodes(g); len(ns) != 1 || !ns[0].Last.IsZero() {
		t.Fatalf("log version 6 recorded %+v", ns)
	}
}

// TestCompactStateReplicasAgree: replicas that apply one log of key
// revocations, batches and compactions reach one state, one of them from a
// snapshot taken before the compactions; and the compaction is of log
// version 7, never proposed before the cluster runs it.
func TestCompactStateReplicasAgree(t *testing.T) {
	const pid = "tdb_0000abcd"
	a, b := atVersion7(t), atVersion7(t)
	for i, step := range []struct {
		ct CommandType
		c  any
	}{
		{CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("key_a", RoleRead, ScopeProject), At: t0}},
		{CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("key_b", RoleRead, ScopeProject), At: t0}},
		{CmdRevokeKey, &RevokeKey{ProjectID: pid, ID: "key_a", At: t0.Add(time.Minute)}},
		{CmdDeleteTenant, &DeleteTenant{ProjectID: pid, Name: "wayne", At: t0.Add(2 * time.Minute)}},
		{CmdRecordAuthFailures, &RecordAuthFailures{At: t0, Node: "n2", Batch: "x", Failures: []AuthFailure{{IP: "192.0.2.1", Count: 2}}}},
		{CmdRecordAuthFailures, &RecordAuthFailures{At: t0, Node: "n3", Batch: "y", Failures: []AuthFailure{{IP: "192.0.2.1", Count: 2}}}},
		{CmdCompactState, &CompactState{At: t0.Add(time.Hour), KeysRevokedBefore: t0.Add(90 * time.Second), BatchNodes: []string{"n2"}, BatchesBefore: t0.Add(time.Second)}},
		{CmdCompactState, &CompactState{At: t0.Add(2 * time.Hour), KeysRevokedBefore: t0.Add(time.Hour), BatchNodes: []string{"n3"}, BatchesBefore: t0}},
	} {
		if step.ct == CmdCompactState && i == 6 {
			b.f = New()
			if err := b.f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a.f)))); err != nil {
				t.Fatal(err)
			}
		}
		ra, rb := a.apply(step.ct, step.c), b.apply(step.ct, step.c)
		if ra.Err != nil || rb.Err != nil {
			t.Fatalf("step %d: %v, %v", i, ra.Err, rb.Err)
		}
		if mustHash(t, a.f) != mustHash(t, b.f) {
			t.Fatalf("step %d %s: the replicas diverged", i, step.ct)
		}
	}
	a.f.View(func(s *State) {
		p := s.Projects[pid]
		if p.Keys["key_a"] != nil || p.Keys["key_wayne"] != nil || p.Keys["key_b"] == nil {
			t.Fatalf("keys left: %v", p.Keys)
		}
		if ns := s.Bans.BatchNodes(); len(ns) != 1 || ns[0].Node != "n3" {
			t.Fatalf("batch nodes left: %+v", ns)
		}
	})

	s := NewState()
	s.LogVersion = 6
	if err := s.CheckProposable(CmdCompactState); err == nil {
		t.Fatal("a compaction proposable at log version 6")
	}
	s.LogVersion = 7
	if err := s.CheckProposable(CmdCompactState); err != nil {
		t.Fatal(err)
	}
}
