package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"tdb/fsm"
)

// openLone opens the replica of node "a" in dir, bootstrapping a cluster
// of its own when dir holds none, with short timeouts.
func openLone(dir string) (*Replica, error) {
	return OpenReplica(RaftConfig{NodeID: "a", Dir: dir, BindAddr: "127.0.0.1:0", Bootstrap: true, LogOutput: io.Discard,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond})
}

// leadLone opens the lone replica in dir (openLone) and waits until it
// leads.
func leadLone(t *testing.T, dir string) (*Replica, context.Context) {
	t.Helper()
	r, err := openLone(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r, leadAlone(t, r)
}

// snapshotOne applies one command through r and takes a snapshot.
func snapshotOne(ctx context.Context, t *testing.T, r *Replica) {
	t.Helper()
	if _, _, err := r.Apply(ctx, fsm.CmdAddBackend, &fsm.AddBackend{Name: "b", URL: "postgres://x", At: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
}

// A second process on the same data directory gets an error saying so,
// instead of waiting for the file lock for ever.
func TestLogStoreInUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "raft.db")
	first, err := openLogStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := openLogStore(path, 0); err == nil || !strings.Contains(err.Error(), "in use by another process") {
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
	store, err := openLogStore(filepath.Join(dir, "raft.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := checkWithSnapshots(t, store, snaps); err != nil {
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
	if err := checkWithSnapshots(t, store, snaps); err == nil || !strings.Contains(err.Error(), "is empty but snapshots up to index 1106") {
		t.Fatalf("an empty log store beside a snapshot: %v", err)
	}
	// A store that went on after the snapshot (its log compacted, its
	// term kept) is fine.
	if err := store.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := checkWithSnapshots(t, store, snaps); err != nil {
		t.Fatalf("a store with its term: %v", err)
	}
}

// A node whose snapshot is damaged says where it is and what to do,
// rather than only that no snapshot could be loaded.
func TestDamagedSnapshotNamesItsPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() (*Replica, error) { return openLone(dir) }
	r, ctx := leadLone(t, dir)
	snapshotOne(ctx, t, r)
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

// A compacted log whose snapshot is gone or unreadable is refused: raft
// would start without the entries before the log's first, and its store
// panics when it reads them.
func TestCompactedLogWithoutItsSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store, err := openLogStore(filepath.Join(dir, "raft.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(100); i <= 105; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 2, Type: raft.LogNoop})
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := store.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 99, 2, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := checkWithSnapshots(t, store, snaps); err != nil {
		t.Fatalf("a log that goes on from its snapshot: %v", err)
	}
	store.Close()
	metas, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
	if len(metas) != 1 {
		t.Fatalf("snapshots: %v", metas)
	}
	if err := os.Truncate(metas[0], 10); err != nil {
		t.Fatal(err)
	}
	_, err = OpenReplica(RaftConfig{NodeID: "a", Dir: dir, BindAddr: "127.0.0.1:0", LogOutput: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "starts at entry 100") || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("open a compacted log without its snapshot: %v", err)
	}
}

// A damaged page among the log's entries is an error when the node
// starts, rather than a panic in raft.
func TestDamagedLogEntryIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() (*Replica, error) { return openLone(dir) }
	r, ctx := leadLone(t, dir)
	// Enough entries that the log spans many pages; each one is marked.
	const n = 200
	marker := func(i int) []byte { return []byte(fmt.Sprintf("postgres://marker-%03d/%0200d", i, 0)) }
	for i := 0; i < n; i++ {
		if _, _, err := r.Apply(ctx, fsm.CmdAddBackend, &fsm.AddBackend{Name: "b" + strconv.Itoa(i), URL: string(marker(i)), At: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	// Every page that holds an entry from the middle of the log gets a
	// header of zeros: the live leaf among them is then of no page type.
	// The log's first and last pages, which opening the store reads, stay.
	path := filepath.Join(dir, "raft.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	hit := 0
	for off := 2 * page; off+page <= len(data); off += page {
		p := data[off : off+page]
		if bytes.Contains(p, marker(n/2)) && !bytes.Contains(p, marker(0)) && !bytes.Contains(p, marker(n-1)) {
			clear(p[:16])
			hit++
		}
	}
	if hit == 0 {
		t.Fatal("no page holds the entry")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := open(); err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), "join the node") {
		t.Fatalf("reopen with a damaged entry: %v", err)
	}
}

// A node whose log store was emptied, with no snapshot beside it, is
// refused once it has been part of a cluster (its cluster ID file says
// so), rather than bootstrapping an empty cluster in its place.
func TestLogStoreEmptiedWithoutSnapshots(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() (*Replica, error) { return openLone(dir) }
	r, ctx := leadLone(t, dir)
	if _, _, err := r.Apply(ctx, fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: fsm.LogVersion}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Apply(ctx, fsm.CmdSetClusterID, &fsm.SetClusterID{ID: r.identity.Local()}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.identity.persist(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err := open()
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	r.Close()
	if err := os.Truncate(filepath.Join(dir, "raft.db"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := open(); err == nil || !strings.Contains(err.Error(), "is empty and there is no snapshot") {
		t.Fatalf("reopen with an emptied log store: %v", err)
	}
}

// A node whose newest snapshot is of a newer cluster log version than its
// build (it was downgraded in place) refuses to start, saying to upgrade
// it: not that the snapshot is damaged (moving it out, as that said,
// makes the node start from an older state), and not by silently starting
// from an older snapshot beside it, which only ends at an entry it cannot
// apply.
func TestNewerSnapshotRefusedAtStart(t *testing.T) {
	t.Parallel()
	for _, keepOlder := range []bool{false, true} {
		dir := t.TempDir()
		open := func() (*Replica, error) { return openLone(dir) }
		r, ctx := leadLone(t, dir)
		snapshotOne(ctx, t, r)
		r.Close()
		newerSnapshot(t, dir, keepOlder)
		r, err := open()
		if err == nil {
			r.Close()
		}
		want := fmt.Sprintf("cluster log version %d and this build applies up to %d: upgrade this node", fsm.LogVersion+1, fsm.LogVersion)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "damaged") {
			t.Fatalf("older snapshot kept %v: reopen beside a snapshot of a newer log version: %v", keepOlder, err)
		}
	}
}

// newerSnapshot adds to dir a copy of its newest snapshot whose state is of
// the next log version, as a newer build would have written it; without
// keepOlder it removes the others.
func newerSnapshot(t *testing.T, dir string, keepOlder bool) {
	t.Helper()
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		t.Fatalf("snapshots: %v %v", list, err)
	}
	meta, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	err = json.NewDecoder(rc).Decode(&data)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	data["state"].(map[string]any)["log_version"] = fsm.LogVersion + 1
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !keepOlder {
		for _, s := range list {
			if err := os.RemoveAll(filepath.Join(dir, "snapshots", s.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(2 * time.Millisecond) // a snapshot's ID ends with the time in ms: another one
	_, peers := raft.NewInmemTransport("")
	sink, err := snaps.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, peers)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
}

// A follower that installs a snapshot from its leader keeps the older
// entries its log had (raft compacts only up to TrailingLogs behind the
// last of them) and appends the leader's after the snapshot: its log has
// a gap before the snapshot, which raft never reads. That node starts
// again. A gap after the newest snapshot, whose entries raft replays at
// start, is refused.
func TestLogWithAGapBeforeItsSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() (*Replica, error) { return openLone(dir) }
	r, ctx := leadLone(t, dir)
	add := func(i int) {
		t.Helper()
		if _, _, err := r.Apply(ctx, fsm.CmdAddBackend, &fsm.AddBackend{Name: "b" + strconv.Itoa(i), URL: "postgres://x", At: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		add(i)
	}
	snap := r.Raft.Snapshot()
	if err := snap.Error(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := snap.Open()
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	snapIdx := meta.Index
	for i := 10; i < 13; i++ {
		add(i)
	}
	r.Close()

	cut := func(from, to uint64) {
		t.Helper()
		store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if err := store.DeleteRange(from, to); err != nil {
			t.Fatal(err)
		}
	}
	cut(4, snapIdx-2)
	r, err = open()
	if err != nil {
		t.Fatalf("reopen a log with a gap before its snapshot: %v", err)
	}
	leadAlone(t, r)
	if err := r.Raft.Barrier(10 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	var backends int
	r.FSM.View(func(s *fsm.State) { backends = len(s.Backends) })
	r.Close()
	if backends != 13 {
		t.Fatalf("reopened with %d backends, want 13", backends)
	}

	cut(snapIdx+1, snapIdx+1)
	if _, err := open(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("entry %d", snapIdx+1)) {
		t.Fatalf("reopen a log missing an entry after its snapshot: %v", err)
	}
}

// An entry the log store cannot give is named in the error, and the store
// is closed: its file is not left locked for the next attempt.
func TestLogStoreErrorClosesTheStore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "raft.db")
	store, err := openLogStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 6; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogNoop})
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteRange(3, 3); err != nil {
		t.Fatal(err)
	}
	store.Close()
	for range 2 {
		if _, err := openLogStore(path, 0); err == nil || !strings.Contains(err.Error(), "entry 3 of 1..6") {
			t.Fatalf("open a log store that lacks entry 3: %v", err)
		}
	}
}

// checkWithSnapshots runs checkLogStore as OpenReplica does.
func checkWithSnapshots(t *testing.T, store *raftboltdb.BoltStore, snaps raft.SnapshotStore) error {
	t.Helper()
	list, restorable, err := restorableSnapshot(snaps)
	if err != nil {
		t.Fatal(err)
	}
	return checkLogStore(store, list, restorable, "raft.db", "snapshots")
}
