package node

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/fsm"
	"tdb/gossip"
	"tdb/httpapi"
)

func TestLogVersionTarget(t *testing.T) {
	servers := []raft.Server{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	member := func(id string, v uint16) gossip.Member {
		return gossip.Member{Meta: gossip.Meta{ID: id, LogVersion: v}}
	}
	for _, tc := range []struct {
		name    string
		own     uint16
		members []gossip.Member
		want    uint16
		unknown string
	}{
		{"all new", 3, []gossip.Member{member("b", 3), member("c", 3)}, 3, ""},
		{"one old follower", 3, []gossip.Member{member("b", 3), member("c", 2)}, 2, ""},
		{"old leader", 2, []gossip.Member{member("b", 3), member("c", 3)}, 2, ""},
		{"a build from before versions", 3, []gossip.Member{member("b", 3), member("c", 0)}, 0, "c"},
		{"a server not heard from", 3, []gossip.Member{member("b", 3)}, 0, "c"},
		{"members outside raft do not count", 3, []gossip.Member{member("b", 3), member("c", 3), member("x", 1)}, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := map[string]gossip.Member{}
			for _, m := range tc.members {
				ms[m.ID] = m
			}
			v, unknown := logVersionTarget("a", tc.own, servers, ms)
			if v != tc.want || unknown != tc.unknown {
				t.Fatalf("got %d, %q; want %d, %q", v, unknown, tc.want, tc.unknown)
			}
		})
	}
}

// TestFakeSaltSecret: nodes that share a cluster secret derive one seed; a
// node without one keeps its own across restarts, in its data directory.
func TestFakeSaltSecret(t *testing.T) {
	a, _ := fakeSaltSecret("s", t.TempDir())
	b, _ := fakeSaltSecret("s", t.TempDir())
	if len(a) != 32 || !bytes.Equal(a, b) {
		t.Fatalf("one cluster secret, two seeds: %x %x", a, b)
	}
	dir := t.TempDir()
	first, err := fakeSaltSecret("", dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := fakeSaltSecret("", dir)
	if err != nil || !bytes.Equal(first, again) || bytes.Equal(first, a) {
		t.Fatalf("a lone node's seed across restarts: %x, then %x (%v)", first, again, err)
	}
}

// TestApplyFailure: a command raft refused as not the leader may go to
// another node; one whose leader lost its place after appending it has an
// unknown outcome, and the HTTP API must not answer "not_leader; retry".
func TestApplyFailure(t *testing.T) {
	lost := applyFailure(fsm.CmdCreateKey, raft.ErrLeadershipLost)
	if !errors.Is(lost, httpapi.ErrOutcomeUnknown) || errors.Is(lost, httpapi.ErrNotLeader) || errors.Is(lost, ErrNotLeader) {
		t.Fatalf("leadership lost: %v", lost)
	}
	refused := applyFailure(fsm.CmdCreateKey, raft.ErrNotLeader)
	if !errors.Is(refused, ErrNotLeader) || !errors.Is(refused, raft.ErrNotLeader) || errors.Is(refused, httpapi.ErrOutcomeUnknown) {
		t.Fatalf("not the leader: %v", refused)
	}
}
