package node

import (
	"testing"

	"github.com/hashicorp/raft"

	"tdb/gossip"
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
