package fsm

import "testing"

// The first cluster ID committed stays; a malformed one changes nothing;
// the command waits for log version 3.
func TestSetClusterID(t *testing.T) {
	s := NewState()
	if err := s.CheckProposable(CmdSetClusterID); err == nil {
		t.Fatal("set_cluster_id proposable at log version 1")
	}
	if _, err := applySetLogVersion(s, 1, &SetLogVersion{Version: 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckProposable(CmdSetClusterID); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "0123456789abcde", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef;x"} {
		if _, err := applySetClusterID(s, 2, &SetClusterID{ID: bad}); err == nil || s.ClusterID != "" {
			t.Fatalf("cluster id %q taken: %v, state %q", bad, err, s.ClusterID)
		}
	}
	first := "0123456789abcdef0123456789abcdef"
	for _, id := range []string{first, "fedcba9876543210"} {
		got, err := applySetClusterID(s, 3, &SetClusterID{ID: id})
		if err != nil || got != first || s.ClusterID != first {
			t.Fatalf("set %q: %v, %v; state %q", id, got, err, s.ClusterID)
		}
	}
}
