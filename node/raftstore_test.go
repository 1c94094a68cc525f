package node

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"tdb/fsm"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A second process on the same data directory gets an error saying so,
// instead of waiting for the file lock for ever.
func TestLogStoreInUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "raft.db")
	first, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := openLogStore(path); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
}

// A log store that lost its contents next to snapshots is refused: raft
// would start from the snapshot and drop the writes after it.
func TestLogStoreEmptiedBesideSnapshots(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store, err := openLogStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := checkLogStore(store, snaps, "raft.db"); err != nil {
		t.Fatalf("a new data directory: %v", err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1106, 2, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := checkLogStore(store, snaps, "raft.db"); err == nil || !strings.Contains(err.Error(), "is empty but snapshots up to index 1106") {
		t.Fatalf("an empty log store beside a snapshot: %v", err)
	}
	// A store that went on after the snapshot (its log compacted, its
	// term kept) is fine.
	if err := store.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := checkLogStore(store, snaps, "raft.db"); err != nil {
		t.Fatalf("a store with its term: %v", err)
	}
}

// A node whose snapshot is damaged says where it is and what to do,
// rather than only that no snapshot could be loaded.
func TestDamagedSnapshotNamesItsPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() (*Replica, error) {
		return OpenReplica(RaftConfig{NodeID: "a", Dir: dir, BindAddr: "127.0.0.1:0", Bootstrap: true, LogOutput: io.Discard,
			HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond})
	}
	r, err := open()
	if err != nil {
		t.Fatal(err)
	}
	ctx := leadAlone(t, r)
	if _, _, err := r.Apply(ctx, fsm.CmdAddBackend, &fsm.AddBackend{Name: "b", URL: "postgres://x", At: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	states, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if len(states) != 1 {
		t.Fatalf("snapshots: %v", states)
	}
	if err := os.WriteFile(states[0], []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := open(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "snapshots")) || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("reopen with a damaged snapshot: %v", err)
	}
}

// leadAlone waits until r, the one server of its cluster, leads, and
// returns a context for its commands that ends with the test.
func leadAlone(t *testing.T, r *Replica) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if err := r.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for !r.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	return ctx
}
