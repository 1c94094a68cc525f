package gossip

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// poll retries cond until it holds, failing the test after a generous bound
// (a liveness bound, not a timing assertion).
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, id string, join []string, peersFile string) *Gossip {
	t.Helper()
	return startAt(t, id, "127.0.0.1:0", join, peersFile)
}

func startAt(t *testing.T, id, addr string, join []string, peersFile string) *Gossip {
	t.Helper()
	g, err := Start(Config{
		Meta:           Meta{ID: id, RaftAddr: id + ":raft", HTTPAddr: id + ":http", WireAddr: id + ":wire"},
		BindAddr:       addr,
		SecretKey:      []byte("0123456789abcdef0123456789abcdef"),
		Join:           join,
		PeersFile:      peersFile,
		Logf:           t.Logf,
		ProbeInterval:  100 * time.Millisecond,
		ProbeTimeout:   50 * time.Millisecond,
		GossipInterval: 20 * time.Millisecond,
		SuspicionMult:  2,
		ResyncInterval: 50 * time.Millisecond,
		RejoinInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

func state(g *Gossip, id string) (State, bool) {
	m, ok := g.Member(id)
	return m.State, ok
}

func TestJoinLeaveFail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := start(t, "a", nil, "")
	b := start(t, "b", []string{a.Addr()}, "")
	c := start(t, "c", []string{b.Addr()}, filepath.Join(dir, "c-peers.json"))
	for _, g := range []*Gossip{a, b, c} {
		poll(t, "three alive members", func() bool {
			n := 0
			for _, m := range g.Members() {
				if m.State == StateAlive {
					n++
				}
			}
			return n == 3
		})
	}
	m, _ := a.Member("c")
	if m.RaftAddr != "c:raft" || m.HTTPAddr != "c:http" || m.WireAddr != "c:wire" || m.GossipAddr != c.Addr() {
		t.Fatalf("a sees c as %+v", m)
	}
	// The table changes before the file is written (after it, by the
	// goroutine that applied the change).
	poll(t, "c to save a's and b's addresses as its peers", func() bool {
		return len(loadPeers(filepath.Join(dir, "c-peers.json"))) == 2
	})

	if err := b.Leave(10 * time.Second); err != nil { // a bound for a loaded machine, not a timing claim
		t.Fatal(err)
	}
	poll(t, "a sees b left", func() bool { s, _ := state(a, "b"); return s == StateLeft })
	_ = b.Shutdown()

	cAddr := c.Addr()
	_ = c.Shutdown()
	poll(t, "a sees c failed", func() bool { s, _ := state(a, "c"); return s == StateFailed })

	// c restarts at its address from its peers file alone and is alive again.
	c2 := startAt(t, "c", cAddr, nil, filepath.Join(dir, "c-peers.json"))
	poll(t, "a sees c alive again", func() bool { s, _ := state(a, "c"); return s == StateAlive })
	poll(t, "c2 sees a", func() bool { s, _ := state(c2, "a"); return s == StateAlive })
}

func TestWrongSecretCannotJoin(t *testing.T) {
	t.Parallel()
	a := start(t, "a", nil, "")
	g, err := Start(Config{Meta: Meta{ID: "intruder"}, BindAddr: "127.0.0.1:0", SecretKey: []byte("ffffffffffffffffffffffffffffffff"), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	if err := g.Join([]string{a.Addr()}); err == nil {
		t.Fatal("joined with the wrong secret")
	}
	if _, ok := a.Member("intruder"); ok {
		t.Fatal("a lists the intruder")
	}
}

func TestTable(t *testing.T) {
	now := time.Unix(1000, 0)
	meta := func(id string, leaving bool) []byte {
		if leaving {
			return []byte(`{"id":"` + id + `","raft":"r","leaving":true}`)
		}
		return []byte(`{"id":"` + id + `","raft":"r"}`)
	}
	for _, tc := range []struct {
		name   string
		events []event
		live   []string // nil: no resync
		want   State
	}{
		{"join", []event{{kind: evJoin, name: "x", meta: meta("x", false)}}, nil, StateAlive},
		{"fail", []event{{kind: evJoin, name: "x", meta: meta("x", false)}, {kind: evLeave, name: "x", meta: meta("x", false)}}, nil, StateFailed},
		{"leave announced by meta", []event{{kind: evJoin, name: "x", meta: meta("x", false)}, {kind: evUpdate, name: "x", meta: meta("x", true)}, {kind: evLeave, name: "x", meta: meta("x", false)}}, nil, StateLeft},
		{"back after failure", []event{{kind: evLeave, name: "x"}, {kind: evJoin, name: "x", meta: meta("x", false)}}, nil, StateAlive},
		{"dropped leave event repaired by resync", []event{{kind: evJoin, name: "x", meta: meta("x", false)}}, []string{"self"}, StateFailed},
		{"dropped rejoin event repaired by resync", []event{{kind: evJoin, name: "x", meta: meta("x", false)}, {kind: evLeave, name: "x"}}, []string{"x"}, StateAlive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable("self")
			for _, ev := range tc.events {
				tb.apply(ev, now)
			}
			if tc.live != nil {
				tb.resync(tc.live, now)
			}
			m := tb.members["x"]
			if m == nil || m.State != tc.want {
				t.Fatalf("x is %+v, want %s", m, tc.want)
			}
		})
	}
}

// TestDroppedEventsHeal: with a one-slot event queue most callbacks are
// dropped (and logged); the periodic meta refresh still brings every member
// into every table.
func TestDroppedEventsHeal(t *testing.T) {
	t.Parallel()
	var gs []*Gossip
	for i := range 5 {
		var join []string
		if i > 0 {
			join = []string{gs[0].Addr()}
		}
		g, err := Start(Config{
			Meta: Meta{ID: string(rune('a' + i)), RaftAddr: "r"}, BindAddr: "127.0.0.1:0", Join: join,
			Logf: func(string, ...any) {}, EventQueue: 1,
			ProbeInterval: 100 * time.Millisecond, GossipInterval: 20 * time.Millisecond,
			ResyncInterval: 50 * time.Millisecond, RejoinInterval: 100 * time.Millisecond, RefreshInterval: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Shutdown() })
		gs = append(gs, g)
	}
	for _, g := range gs {
		poll(t, "five alive members with their meta", func() bool {
			n := 0
			for _, m := range g.Members() {
				if m.State == StateAlive && m.RaftAddr == "r" {
					n++
				}
			}
			return n == 5
		})
	}
}

// TestTableForgetsGoneMembers: members that come and go under new names do
// not pile up: one left or failed longer than the retention is forgotten,
// one alive (however long) or gone for less is kept, and one forgotten that
// comes back is listed again.
func TestTableForgetsGoneMembers(t *testing.T) {
	start := time.Unix(1000, 0)
	const after = time.Hour
	tb := newTable("self")
	tb.apply(event{kind: evJoin, name: "self", meta: []byte(`{"id":"self"}`)}, start)
	tb.apply(event{kind: evJoin, name: "stays", meta: []byte(`{"id":"stays"}`)}, start)
	for i := range 1000 {
		name := fmt.Sprintf("n%d", i)
		tb.apply(event{kind: evJoin, name: name, meta: []byte(`{"id":"` + name + `"}`)}, start)
		leaving := ""
		if i%2 == 0 {
			leaving = `,"leaving":true`
			tb.apply(event{kind: evUpdate, name: name, meta: []byte(`{"id":"` + name + `"` + leaving + `}`)}, start)
		}
		tb.apply(event{kind: evLeave, name: name}, start)
	}
	tb.apply(event{kind: evLeave, name: "late"}, start.Add(after))
	if tb.forget(start.Add(after), after) || len(tb.members) != 1003 {
		t.Fatalf("forgot members gone for no longer than the retention: %d left", len(tb.members))
	}
	if !tb.forget(start.Add(after+time.Second), after) {
		t.Fatal("forget reported no change")
	}
	var names []string
	for _, m := range tb.list() {
		names = append(names, m.ID)
	}
	if got := strings.Join(names, " "); got != "late self stays" {
		t.Fatalf("members after forgetting: %s, want late self stays", got)
	}
	tb.apply(event{kind: evJoin, name: "n1", meta: []byte(`{"id":"n1"}`)}, start.Add(2*after))
	if m := tb.members["n1"]; m == nil || m.State != StateAlive {
		t.Fatalf("a forgotten member that came back: %+v", m)
	}
}

// TestRejoinTriesSeedsOnceJoined: a node keeps trying the addresses it was
// told to join and its saved peers, not only the failed members of its
// table: after a partition longer than ForgetAfter each side has forgotten
// the other, and without them the two would never meet again. Alive ones
// and itself are left out.
func TestRejoinTriesSeedsOnceJoined(t *testing.T) {
	g := &Gossip{addr: "10.0.0.1:7946", cfg: Config{Join: []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"}, Meta: Meta{ID: "a"}},
		tbl: newTable("a"), joined: true}
	now := time.Unix(1000, 0)
	g.tbl.apply(event{kind: evJoin, name: "a", gossipAddr: "10.0.0.1:7946", meta: []byte(`{"id":"a"}`)}, now)
	g.tbl.apply(event{kind: evJoin, name: "c", gossipAddr: "10.0.0.3:7946", meta: []byte(`{"id":"c"}`)}, now)
	saved := []string{"10.0.0.4:7946", "10.0.0.2:7946"}
	if got := strings.Join(g.rejoinAddrs(saved, true), " "); got != "10.0.0.2:7946 10.0.0.4:7946" {
		t.Fatalf("a joined node retries %q, want the seed and the saved peer not alive", got)
	}
	if got := g.rejoinAddrs(saved, false); len(got) != 0 {
		t.Fatalf("a joined node retries %q between its tries of the seeds, want only failed members", got)
	}
}
