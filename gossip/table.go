package gossip

import (
	"encoding/json"
	"sort"
	"time"
)

// Meta is what a node advertises about itself through gossip.
type Meta struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http"`
	WireAddr string `json:"wire"`
	// LogVersion is the newest raft log version the node's build applies
	// (0: a build from before log versions, i.e. version 1).
	LogVersion uint16 `json:"log,omitempty"`
	// Cluster is the ID of the cluster the node belongs to ("" while it
	// knows none); set from Config.ClusterID each time the meta is sent.
	Cluster string `json:"cluster,omitempty"`
	// Leaving is set just before a graceful leave, so others can tell a
	// node that left (removed from raft at once) from one that failed
	// (removed only after a timeout).
	Leaving bool `json:"leaving,omitempty"`
	// Refresh counts re-advertisements: the meta changes on every refresh,
	// so every member hears from every other at least once per period and a
	// dropped event heals.
	Refresh uint64 `json:"refresh,omitempty"`
}

// State is a member's liveness as this node sees it.
type State int

// Member states.
const (
	StateAlive  State = iota // answering probes
	StateFailed              // stopped answering; may come back
	StateLeft                // left gracefully
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateFailed:
		return "failed"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Member is one entry of the membership table.
type Member struct {
	Meta
	GossipAddr string
	State      State
	Since      time.Time // when State last changed
}

// eventKind is what a memberlist callback reported.
type eventKind int

const (
	evJoin eventKind = iota
	evUpdate
	evLeave
)

// event is a memberlist callback, copied.
type event struct {
	kind       eventKind
	name       string
	gossipAddr string
	meta       []byte
}

// table is the synchronous core: the membership as events describe it.
// It is owned by one goroutine.
type table struct {
	self    string
	members map[string]*Member
}

func newTable(self string) *table {
	return &table{self: self, members: map[string]*Member{}}
}

// apply folds one event into the table and reports whether anything changed.
func (t *table) apply(ev event, now time.Time) bool {
	m := t.members[ev.name]
	var meta Meta
	if len(ev.meta) > 0 {
		_ = json.Unmarshal(ev.meta, &meta)
	}
	if meta.ID == "" {
		meta.ID = ev.name
	}
	switch ev.kind {
	case evJoin, evUpdate:
		if m == nil {
			m = &Member{Since: now}
			t.members[ev.name] = m
		}
		old := m.Meta
		old.Refresh = meta.Refresh
		changed := old != meta || m.GossipAddr != ev.gossipAddr || m.State != StateAlive
		if m.State != StateAlive {
			m.Since = now
		}
		m.Meta, m.GossipAddr, m.State = meta, ev.gossipAddr, StateAlive
		return changed
	case evLeave:
		if m == nil {
			m = &Member{Meta: meta, GossipAddr: ev.gossipAddr}
			t.members[ev.name] = m
		}
		st := StateFailed
		if m.Leaving || meta.Leaving {
			st = StateLeft
		}
		if m.State == st {
			return false
		}
		m.State, m.Since = st, now
		return true
	}
	return false
}

// resync repairs the table after dropped events: members memberlist no
// longer lists become failed (or left), failed ones it lists are alive again.
// It sees names only (memberlist's Node values are not safe to read outside
// its callbacks); a member missing from the table altogether comes back with
// its next meta refresh.
func (t *table) resync(live []string, now time.Time) bool {
	changed := false
	seen := map[string]bool{}
	for _, name := range live {
		seen[name] = true
		if m := t.members[name]; m != nil && m.State == StateFailed {
			m.State, m.Since = StateAlive, now
			changed = true
		}
	}
	for name, m := range t.members {
		if !seen[name] && m.State == StateAlive && name != t.self {
			if t.apply(event{kind: evLeave, name: name, gossipAddr: m.GossipAddr}, now) {
				changed = true
			}
		}
	}
	return changed
}

// forget drops the members that have been left or failed for longer than
// after, and reports whether it dropped any.
func (t *table) forget(now time.Time, after time.Duration) bool {
	changed := false
	for name, m := range t.members {
		if name != t.self && m.State != StateAlive && now.Sub(m.Since) > after {
			delete(t.members, name)
			changed = true
		}
	}
	return changed
}

// list returns copies of the members, sorted by id.
func (t *table) list() []Member {
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
