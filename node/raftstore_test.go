package node

import (
	"io"
	"os"
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

// A log store cut short is an error, not a panic.
func TestLogStoreDamaged(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "raft.db")
	store, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("x", 1000))
	for i := uint64(1); i <= 3000; i += 100 {
		var logs []*raft.Log
		for j := i; j < i+100; j++ {
			logs = append(logs, &raft.Log{Index: j, Term: 1, Type: raft.LogCommand, Data: data})
		}
		if err := store.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{fi.Size() / 2, fi.Size() / 3, 4096} {
		cut := filepath.Join(t.TempDir(), "raft.db")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cut, b[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := openLogStore(cut); err == nil {
			// Some cuts leave a file that opens; reading it must not panic.
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("a store cut to %d bytes panicked on read: %v", size, r)
					}
				}()
				_, _ = s.LastIndex()
			}()
			s.Close()
		}
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
