package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testcluster"
	"tdb/internal/testnode"
	"tdb/node"
)

// backup takes the node's metadata backup through the HTTP API.
func backup(t *testing.T, e *testnode.Env) *fsm.Backup {
	t.Helper()
	var raw json.RawMessage
	e.MustDo(t, "GET", "/v1/cluster/backup", e.AdminKey, "", nil, &raw)
	b, err := fsm.ReadBackup(raw)
	if err != nil {
		t.Fatalf("read the backup: %v", err)
	}
	return b
}

// restoredConfig is the config of a node that restores b into a new data
// dir, beside e's backend.
func restoredConfig(t *testing.T, e *testnode.Env, b *fsm.Backup) node.Config {
	return node.Config{
		NodeID: "r1", DataDir: filepath.Join(t.TempDir(), "data"),
		WireAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Bootstrap: true, Restore: b, AdminKey: e.AdminKey, AllowLoopbackPlaintext: true,
		LogOutput: io.Discard,
		Raft:      node.RaftConfig{HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond},
	}
}

func stateHash(t *testing.T, f *fsm.FSM) string {
	t.Helper()
	h, err := f.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBackupRestore: a node's metadata backup, restored into an empty data
// directory after the node is lost, starts a new cluster of the same state
// under a new cluster ID: a tenant's key logs in through it to the same
// database, with its data, and an API key still works. The backup holds the
// write acknowledged just before it.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	tenantKey := e.CreateTenant(t, "wayne")
	e.WaitReady(t)
	physical := e.Physical(t, "myapp__wayne")
	// The tenant's data, written in its database directly.
	su, err := pgx.ParseConfig(e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	su.Database = physical
	conn, err := pgx.ConnectConfig(ctx, su)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept'); GRANT SELECT ON notes TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	readKey := e.CreateKey(t, "read", "project")
	// A write acknowledged just before the backup.
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", map[string]int64{"ban_sec": 321}, nil)
	if status := e.Do(t, "GET", "/v1/cluster/backup", e.ProxyPassword, "", nil, nil); status != 403 {
		t.Fatalf("backup with the project's key: status %d, want 403", status)
	}
	b := backup(t, e)
	oldID := e.Node.Replica().ClusterID()
	if b.ClusterID != oldID || oldID == "" || b.LogVersion != fsm.LogVersion {
		t.Fatalf("backup of cluster %q at log version %d; the node is of %q at %d", b.ClusterID, b.LogVersion, oldID, fsm.LogVersion)
	}
	inBackup := fsm.New()
	if err := inBackup.Restore(io.NopCloser(bytes.NewReader(b.Snapshot))); err != nil {
		t.Fatal(err)
	}
	inBackup.View(func(s *fsm.State) {
		if s.Settings.BanSec != 321 {
			t.Fatalf("the backup holds ban_sec %d: it misses the write acknowledged before it", s.Settings.BanSec)
		}
	})

	// Every disk of the cluster is lost.
	if err := e.Node.Stop(); err != nil {
		t.Fatal(err)
	}
	e.Node = nil

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cfg := restoredConfig(t, e, b)
	r, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	newID := r.Replica().ClusterID()
	// Restarted, it is the restored cluster, and --restore refuses it.
	cfg.RaftAddr = r.Replica().Addr()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if n, err := node.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "is not empty") {
		if n != nil {
			n.Stop()
		}
		t.Fatalf("restore over the restored node: %v", err)
	}
	cfg.Restore = nil
	if r, err = node.Start(ctx, cfg); err != nil {
		t.Fatalf("restart the restored node: %v", err)
	}
	e.Node = r // stopped at cleanup; ConnString and Do now reach it
	if id := r.Replica().ClusterID(); id != newID {
		t.Fatalf("the restored node restarted in cluster %q, was %q", id, newID)
	}
	if newID == "" || newID == oldID {
		t.Fatalf("the restored cluster is %q, the backed-up one %q: want a new ID", newID, oldID)
	}
	if got := r.FSM().AppliedIndex(); got != b.AppliedIndex {
		t.Fatalf("the restored node applied up to %d, the backup %d", got, b.AppliedIndex)
	}
	rebased, err := b.Rebase(newID)
	if err != nil {
		t.Fatal(err)
	}
	want := fsm.New()
	if err := want.Restore(io.NopCloser(bytes.NewReader(rebased))); err != nil {
		t.Fatal(err)
	}
	if got, w := stateHash(t, r.FSM()), stateHash(t, want); got != w {
		t.Fatalf("the restored state hashes %s, the backup's with the new cluster ID %s", got, w)
	}
	if stateHash(t, r.FSM()) == stateHash(t, inBackup) {
		t.Fatal("the restored state hashes as the backup's, cluster ID included")
	}

	conn, err = pgx.Connect(ctx, e.ConnString(tenantKey, "myapp__wayne", "disable"))
	if err != nil {
		t.Fatalf("the tenant's key through the restored node: %v", err)
	}
	defer conn.Close(ctx)
	var db, body string
	if err := conn.QueryRow(ctx, "SELECT current_database(), (SELECT body FROM notes)").Scan(&db, &body); err != nil {
		t.Fatal(err)
	}
	if db != physical || body != "kept" {
		t.Fatalf("the tenant reached %s and read %q, want %s and \"kept\"", db, body, physical)
	}
	var settings struct {
		BanSec int64 `json:"ban_sec"`
	}
	e.MustDo(t, "GET", "/v1/cluster/settings", readKey, "", nil, &settings)
	if settings.BanSec != 321 {
		t.Fatalf("settings through the restored node: ban_sec %d", settings.BanSec)
	}
	var st struct {
		ClusterID string `json:"cluster_id"`
		LeaderID  string `json:"leader_id"`
	}
	e.MustDo(t, "GET", "/v1/cluster/status", e.AdminKey, "", nil, &st)
	if st.ClusterID != newID || st.LeaderID != "r1" {
		t.Fatalf("the restored cluster's status %+v, want cluster %s led by r1", st, newID)
	}
}

// TestRestoreRefusesADataDir: a backup is restored into an empty data
// directory only; the one refused is left as it was.
func TestRestoreRefusesADataDir(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	b := backup(t, e)
	cfg := restoredConfig(t, e, b)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "something"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err == nil {
		n.Stop()
		t.Fatal("restored into a data directory that holds a file")
	}
	if !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("restore into a used data directory: %v", err)
	}
	entries, _ := os.ReadDir(cfg.DataDir)
	if len(entries) != 1 {
		t.Fatalf("the refused data directory holds %d entries now", len(entries))
	}
}

// TestClusterBackupRestoreJoin: a backup taken through a follower holds the
// write just acknowledged through the leader; restored after the whole
// cluster is lost, the new cluster takes a node that joins it as usual,
// which gets the restored state and lets the tenant's key in.
func TestClusterBackupRestoreJoin(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2)
	leader := c.WaitLeader(t)
	follower := 1 - leader
	tenantKey := c.CreateTenant(t, leader, "wayne")
	c.WaitReady(t)
	c.MustDo(t, leader, "PATCH", "/v1/cluster/settings", testcluster.AdminKey, "", map[string]int64{"ban_sec": 654}, nil)
	var raw json.RawMessage
	c.MustDo(t, follower, "GET", "/v1/cluster/backup", testcluster.AdminKey, "", nil, &raw)
	b, err := fsm.ReadBackup(raw)
	if err != nil {
		t.Fatal(err)
	}
	inBackup := fsm.New()
	if err := inBackup.Restore(io.NopCloser(bytes.NewReader(b.Snapshot))); err != nil {
		t.Fatal(err)
	}
	inBackup.View(func(s *fsm.State) {
		if s.Settings.BanSec != 654 {
			t.Fatalf("the follower's backup holds ban_sec %d: it misses the write acknowledged before it", s.Settings.BanSec)
		}
	})
	oldID := c.Status(t, leader).ClusterID

	c.Stop(t, follower)
	c.Stop(t, leader)
	restored := c.Add(t, 60*time.Second, func(cfg *node.Config) {
		cfg.Bootstrap, cfg.Join, cfg.Restore = true, nil, b
	})
	joiner := c.Add(t, 60*time.Second, nil)
	testcluster.Eventually(t, "the joiner a voter of the restored cluster", func() bool {
		st, err := c.Members[restored].Node.Status(context.Background())
		if err != nil {
			return false
		}
		voters := 0
		for _, ns := range st.Nodes {
			if ns.Voter && ns.Alive {
				voters++
			}
		}
		return voters == 2
	})
	newID := c.Status(t, restored).ClusterID
	if newID == "" || newID == oldID {
		t.Fatalf("restored cluster %q, old cluster %q", newID, oldID)
	}
	testcluster.Eventually(t, "the joiner to take the restored cluster's ID", func() bool {
		return c.Members[joiner].Node.Replica().ClusterID() == newID
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(joiner, tenantKey, "myapp__wayne"))
	if err != nil {
		t.Fatalf("the tenant's key through the joiner: %v", err)
	}
	conn.Close(ctx)
	testcluster.Eventually(t, "the joiner's state to be the restored one", func() bool {
		return stateHash(t, c.Members[joiner].Node.FSM()) == stateHash(t, c.Members[restored].Node.FSM())
	})
}
