package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/errors"
)

const (
	oldClusterID = "0123456789abcdef0123456789abcdef"
	newClusterID = "fedcba9876543210fedcba9876543210"
)

// backedUp returns a seeded state of the current log version with a
// cluster ID, and its backup file.
func backedUp(t *testing.T) (*harness, []byte) {
	h := seeded(t)
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: LogVersion})
	h.mustApply(CmdSetClusterID, &SetClusterID{ID: oldClusterID})
	b, err := h.f.Backup(t0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return h, data
}

// restoreBytes restores a snapshot into a new FSM.
func restoreBytes(t *testing.T, snap []byte) *FSM {
	t.Helper()
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return f
}

// TestBackupRebase: a backup read back and rebased on a new cluster ID
// restores the backed-up state but for the ID, at the same index and log
// version.
func TestBackupRebase(t *testing.T) {
	h, data := backedUp(t)
	b, err := ReadBackup(data)
	if err != nil {
		t.Fatalf("read backup: %v", err)
	}
	if b.AppliedIndex != h.index || b.LogVersion != LogVersion || b.ClusterID != oldClusterID || !b.TakenAt.Equal(t0) {
		t.Fatalf("backup envelope %+v, want index %d, log version %d, cluster %s", b, h.index, LogVersion, oldClusterID)
	}
	if got, want := mustHash(t, restoreBytes(t, b.Snapshot)), mustHash(t, h.f); got != want {
		t.Fatalf("the backup's state hashes %s, the state %s", got, want)
	}
	snap, err := b.Rebase(newClusterID)
	if err != nil {
		t.Fatal(err)
	}
	r := restoreBytes(t, snap)
	if r.ClusterID() != newClusterID || r.AppliedIndex() != h.index {
		t.Fatalf("rebased: cluster %s at index %d, want %s at %d", r.ClusterID(), r.AppliedIndex(), newClusterID, h.index)
	}
	var v uint16
	r.View(func(s *State) { v = s.ActiveLogVersion() })
	if v != LogVersion {
		t.Fatalf("rebased log version %d, want %d", v, LogVersion)
	}
	if mustHash(t, r) == mustHash(t, h.f) {
		t.Fatal("the rebased state hashes as the old one: the cluster ID did not change")
	}
	r.mu.Lock()
	r.state.ClusterID = oldClusterID
	r.mu.Unlock()
	if got, want := mustHash(t, r), mustHash(t, h.f); got != want {
		t.Fatalf("the rebased state but for its ID hashes %s, the backed-up one %s", got, want)
	}
	// A key of the backup logs in on the restored state.
	var found bool
	r.View(func(s *State) { found = s.KeyByLookup("lookup-key_wayne") != nil })
	if !found {
		t.Fatal("the restored state lost the tenant's key (its index was not rebuilt)")
	}
}

// TestReadBackupRefuses: a truncated, altered or foreign file, and a
// backup of a newer log version, are refused before anything is restored.
func TestReadBackupRefuses(t *testing.T) {
	_, data := backedUp(t)
	altered := bytes.Replace(data, []byte("p0000abcd__myapp__wayne"), []byte("p0000abcd__myapp__bruce"), 1)
	if bytes.Equal(altered, data) {
		t.Fatal("the test's alteration changed nothing")
	}
	newer := func() []byte {
		var b Backup
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		var d snapshotData
		if err := json.Unmarshal(b.Snapshot, &d); err != nil {
			t.Fatal(err)
		}
		d.State.LogVersion = LogVersion + 1
		b.Snapshot, _ = json.Marshal(d)
		sum := sha256.Sum256(b.Snapshot)
		b.SHA256, b.LogVersion = hex.EncodeToString(sum[:]), LogVersion+1
		out, _ := json.Marshal(&b)
		return out
	}()
	tests := []struct {
		name  string
		data  []byte
		mark  error
		words string
	}{
		{"truncated", data[:len(data)/2], ErrBadBackup, "damaged or truncated"},
		{"empty", nil, ErrBadBackup, "damaged or truncated"},
		{"altered", altered, ErrBadBackup, "checksum"},
		{"trailing data", append(append([]byte{}, data...), `{}`...), ErrBadBackup, "after its end"},
		{"not a backup", []byte(`{"applied":3,"state":{}}`), ErrBadBackup, "not a tdb metadata backup"},
		{"newer log version", newer, ErrNewerLogVersion, "restore it with a newer build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadBackup(tt.data)
			if !errors.Is(err, tt.mark) || !strings.Contains(err.Error(), tt.words) {
				t.Fatalf("ReadBackup: %v; want %v saying %q", err, tt.mark, tt.words)
			}
		})
	}
}
