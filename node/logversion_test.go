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
		ok      bool
	}{
		{"all new", 3, []gossip.Member{member("b", 3), member("c", 3)}, 3, true},
		{"one old follower", 3, []gossip.Member{member("b", 3), member("c", 2)}, 2, true},
		{"old leader", 2, []gossip.Member{member("b", 3), member("c", 3)}, 2, true},
		{"a build from before versions", 3, []gossip.Member{member("b", 3), member("c", 0)}, 0, false},
		{"a server not heard from", 3, []gossip.Member{member("b", 3)}, 0, false},
		{"members outside raft do not count", 3, []gossip.Member{member("b", 3), member("c", 3), member("x", 1)}, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := map[string]gossip.Member{}
			for _, m := range tc.members {
				ms[m.ID] = m
			}
			v, ok := logVersionTarget("a", tc.own, servers, ms)
			if v != tc.want || ok != tc.ok {
				t.Fatalf("got %d, %v; want %d, %v", v, ok, tc.want, tc.ok)
			}
		})
	}
}
