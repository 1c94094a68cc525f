package node

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

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
