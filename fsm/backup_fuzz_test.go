package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/errors"
)

// FuzzReadBackup checks that a backup file ReadBackup accepts is one a
// node can run: it restores, rebases, backs up again into a file
// ReadBackup accepts, its deployments and imports can be read, and
// commands apply on it without a panic. Any other
// file is refused as damaged or too new. With wrap, the input is the
// snapshot inside an envelope that describes it and checksums it, so the
// fuzzer reaches what lies behind the checksum.
func FuzzReadBackup(f *testing.F) {
	log := randomLog(7, 60)
	seed := New()
	for i, e := range log {
		applyEntry(seed, uint64(i+1), e)
	}
	b, err := seed.Backup(t0)
	if err != nil {
		f.Fatal(err)
	}
	file, err := json.Marshal(b)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file, false)
	f.Add([]byte(b.Snapshot), true)
	f.Add([]byte(`{"applied":3,"state":{"log_version":3,"cluster_id":"0123456789abcdef0123456789abcdef"}}`), true)
	f.Add([]byte(`{"applied":1,"state":{"projects":{"tdb_00000001":{"id":"tdb_00000001","workspaces":{"w1":{}}}}}}`), true)
	f.Fuzz(func(t *testing.T, in []byte, wrap bool) {
		if wrap {
			in = wrapSnapshot(in)
		}
		b, err := ReadBackup(in)
		if err != nil {
			if !errors.Is(err, ErrBadBackup) && !errors.Is(err, ErrNewerLogVersion) {
				t.Fatalf("error neither ErrBadBackup nor ErrNewerLogVersion: %v", err)
			}
			return
		}
		restored := New()
		if err := restored.Restore(io.NopCloser(bytes.NewReader(b.Snapshot))); err != nil {
			t.Fatalf("an accepted backup does not restore: %v", err)
		}
		if _, err := b.Rebase(newClusterID); err != nil {
			t.Fatalf("an accepted backup does not rebase: %v", err)
		}
		again, err := restored.Backup(t0)
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ReadBackup(data); err != nil {
			t.Fatalf("the restored state's backup is refused: %v", err)
		}
		// What the HTTP API and the leader's deployer and importer read
		// of every deployment and import.
		restored.View(func(s *State) {
			for _, d := range s.Deployments {
				d.Counts()
			}
			for _, im := range s.Imports {
				im.Counts()
			}
		})
		for i, e := range log {
			applyEntry(restored, b.AppliedIndex+uint64(i)+1, e)
		}
	})
}

// wrapSnapshot returns a backup file holding snap as it is, with the
// envelope's checksum, index, log version and cluster ID those of snap.
func wrapSnapshot(snap []byte) []byte {
	var d snapshotData
	_ = json.Unmarshal(snap, &d)
	var version uint16
	var cluster string
	if d.State != nil {
		version, cluster = d.State.ActiveLogVersion(), d.State.ClusterID
	}
	sum := sha256.Sum256(snap)
	id, _ := json.Marshal(cluster)
	return fmt.Appendf(nil, `{"format":%q,"format_version":%d,"log_version":%d,"applied_index":%d,"cluster_id":%s,"taken_at":"2026-01-02T03:04:05Z","sha256":%q,"snapshot":%s}`,
		BackupFormat, BackupFormatVersion, version, d.Applied, id, hex.EncodeToString(sum[:]), snap)
}
