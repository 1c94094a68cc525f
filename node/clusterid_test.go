package node

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tdb/fsm"
)

// A node keeps the cluster's ID beside its raft state: one that bootstraps
// draws a new one (but not over a file an earlier cluster left: its raft
// state was lost), one about to join has none, a restart reads it, and a
// damaged file stops the start.
func TestClusterIdentityFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster-id")
	open := func(bootstrap bool) (*Replica, error) {
		return OpenReplica(RaftConfig{NodeID: "a", Dir: dir, BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, LogOutput: io.Discard})
	}
	stale := "00000000000000000000000000000000"
	if err := os.WriteFile(path, []byte(stale+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := open(false)
	if err != nil {
		t.Fatal(err)
	}
	if id := r.ClusterID(); id != "" {
		t.Fatalf("a node about to join says cluster %q", id)
	}
	r.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a joiner kept an earlier cluster's id: %v", err)
	}
	// One that would bootstrap over an ID committed before, with no raft
	// state, lost its metadata: it does not start a new, empty cluster.
	if err := os.WriteFile(path, []byte(stale+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := open(true); err == nil || !strings.Contains(err.Error(), "its metadata was lost") {
		t.Fatalf("a bootstrap over an earlier cluster's id and no raft state: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r, err = open(true)
	if err != nil {
		t.Fatal(err)
	}
	id := r.identity.Local()
	if fsm.CheckClusterID(id) != nil || id == stale {
		t.Fatalf("a bootstrapped node's cluster id: %q", id)
	}
	if got := r.ClusterID(); got != "" {
		t.Fatalf("a pending cluster id is told: %q", got)
	}
	// Restarted before its ID is committed, alone in its configuration, it
	// still admits no other cluster.
	r.Close()
	if r, err = open(true); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.identity.Admits("bbbbbbbbbbbbbbbb"); ok || r.identity.Local() != id {
		t.Fatalf("restarted with pending id %q (was %q): admits another cluster: %v", r.identity.Local(), id, ok)
	}
	// Its first leader records it; the file then says so.
	ctx := leadAlone(t, r)
	if _, _, err := r.Apply(ctx, fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 3}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Apply(ctx, fsm.CmdSetClusterID, &fsm.SetClusterID{ID: id}); err != nil {
		t.Fatal(err)
	}
	if changed, err := r.identity.persist(); err != nil || !changed {
		t.Fatalf("persist: %v, %v", changed, err)
	}
	r.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != id+"\n" {
		t.Fatalf("the file after the commit: %q, %v", b, err)
	}
	r, err = open(true) // a restart: the id is told before the log is applied again
	if err != nil {
		t.Fatal(err)
	}
	if got := r.identity.ID(); got != id {
		t.Fatalf("after a restart the cluster id is %q, was %q", got, id)
	}
	r.Close()
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := open(true); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a damaged cluster id file: %v", err)
	}
}

// Whom a node admits over raft, and checks members against, by what it
// knows of its cluster.
func TestClusterIdentityAdmits(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	c, err := openClusterIdentity(t.TempDir(), f)
	if err != nil {
		t.Fatal(err)
	}
	a, b := "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
	check := func(state, theirs string, want bool) {
		t.Helper()
		if _, ok := c.Admits(theirs); ok != want {
			t.Errorf("%s: admits %q = %v, want %v", state, theirs, ok, want)
		}
	}
	check("no id", a, true)
	if err := c.create(); err != nil {
		t.Fatal(err)
	}
	pending := c.Local()
	if c.Own() != pending || c.ID() != "" {
		t.Fatalf("a fresh bootstrap: own %q, told %q", c.Own(), c.ID())
	}
	check("fresh, pending", b, false)
	check("fresh, pending", pending, true)
	check("fresh, pending", "", false)
	c.joined()
	check("pending, with other servers", b, true)
	check("pending, with other servers", "", true)
	if err := c.write(a, true); err != nil {
		t.Fatal(err)
	}
	check("committed", b, false)
	check("committed", a, true)
	check("committed", "", true)
}

// A freshly bootstrapped node whose configuration took in another server
// is fresh no more, also as a follower (which never runs the leader's
// membership round): its pending ID may be replaced by the one its new
// leader commits, and it must admit that leader.
func TestClusterIdentityFreshEndsOnAFollower(t *testing.T) {
	t.Parallel()
	open := func(id string, bootstrap bool) *Replica {
		r, err := OpenReplica(RaftConfig{NodeID: id, Dir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, LogOutput: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	a := open("a", true)
	leadAlone(t, a)
	if _, ok := a.identity.Admits("bbbbbbbbbbbbbbbb"); ok {
		t.Fatal("a fresh node alone in its cluster admits another cluster")
	}
	b := open("b", false)
	if err := a.Raft.AddVoter("b", raft.ServerAddress(b.Addr()), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.identity.Admits("bbbbbbbbbbbbbbbb"); !ok {
		t.Fatalf("a node whose configuration holds %d servers refuses the ID its cluster may commit (its pending one is %s)",
			len(a.Raft.GetConfiguration().Configuration().Servers), a.identity.Local())
	}
}
