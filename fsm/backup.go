package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/cockroachdb/errors"
)

// A metadata backup is the replicated state as of an applied index, the
// bytes Snapshot persists, in a small JSON envelope that says what it is
// and checksums them. It holds every secret of the state (role passwords,
// backend URLs, key verifiers): whoever has it can reach every tenant.

// BackupFormat names the envelope; BackupFormatVersion is its version.
const (
	BackupFormat        = "tdb-metadata-backup"
	BackupFormatVersion = 1
)

// Backup is a metadata backup (`GET /v1/cluster/backup`).
type Backup struct {
	Format        string    `json:"format"`
	FormatVersion int       `json:"format_version"`
	LogVersion    uint16    `json:"log_version"`   // the cluster's log version in the state
	AppliedIndex  uint64    `json:"applied_index"` // the raft index of the state's last command
	ClusterID     string    `json:"cluster_id,omitempty"`
	TakenAt       time.Time `json:"taken_at"`
	// SHA256 is the hex digest of Snapshot's bytes as they are in the file.
	SHA256 string `json:"sha256"`
	// Snapshot is what Snapshot persists: {"applied": ..., "state": {...}}.
	Snapshot json.RawMessage `json:"snapshot"`
}

// ErrBadBackup marks a backup file that is damaged, truncated or not a
// backup at all.
var ErrBadBackup = errors.New("not a valid metadata backup")

// Backup returns the state as a backup taken at now.
func (f *FSM) Backup(now time.Time) (*Backup, error) {
	f.mu.RLock()
	data, err := json.Marshal(snapshotData{Applied: f.applied, State: f.state})
	b := &Backup{
		Format: BackupFormat, FormatVersion: BackupFormatVersion,
		LogVersion: f.state.ActiveLogVersion(), AppliedIndex: f.applied, ClusterID: f.state.ClusterID,
		TakenAt: now.UTC(),
	}
	f.mu.RUnlock()
	if err != nil {
		return nil, errors.Wrap(err, "marshal the state")
	}
	sum := sha256.Sum256(data)
	b.SHA256, b.Snapshot = hex.EncodeToString(sum[:]), data
	return b, nil
}

// ReadBackup decodes and checks a backup file: its envelope, its checksum,
// that the envelope describes the state it holds, and that this build can
// run its log version (ErrNewerLogVersion otherwise).
func ReadBackup(data []byte) (*Backup, error) {
	var b Backup
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&b); err != nil {
		return nil, errors.Mark(errors.Wrap(err, "the backup is damaged or truncated"), ErrBadBackup)
	}
	if dec.More() {
		return nil, errors.Mark(errors.New("the backup has data after its end: it is damaged"), ErrBadBackup)
	}
	if b.Format != BackupFormat {
		return nil, errors.Mark(errors.Newf("the file is not a tdb metadata backup (format %q)", b.Format), ErrBadBackup)
	}
	if b.FormatVersion != BackupFormatVersion {
		return nil, errors.Mark(errors.Newf("the backup's format version is %d and this build reads %d", b.FormatVersion, BackupFormatVersion), ErrBadBackup)
	}
	sum := sha256.Sum256(b.Snapshot)
	if got := hex.EncodeToString(sum[:]); got != b.SHA256 {
		return nil, errors.Mark(errors.Newf("the backup is damaged: its state's checksum is %s, the backup says %s", got, b.SHA256), ErrBadBackup)
	}
	d, err := b.decode()
	if err != nil {
		return nil, err
	}
	if d.Applied != b.AppliedIndex || d.State.ActiveLogVersion() != b.LogVersion || d.State.ClusterID != b.ClusterID {
		return nil, errors.Mark(errors.Newf("the backup is damaged: it says index %d, log version %d, cluster %q, and its state is of index %d, log version %d, cluster %q",
			b.AppliedIndex, b.LogVersion, b.ClusterID, d.Applied, d.State.ActiveLogVersion(), d.State.ClusterID), ErrBadBackup)
	}
	if err := checkRestorable(d.State); err != nil {
		return nil, errors.Mark(errors.Newf("the backup is of cluster log version %d and this build applies up to %d: restore it with a newer build", b.LogVersion, LogVersion), ErrNewerLogVersion)
	}
	if err := checkWellFormed(d.State); err != nil {
		return nil, errors.Mark(errors.Wrap(err, "the backup is damaged"), ErrBadBackup)
	}
	return &b, nil
}

// checkWellFormed refuses a state no commands make, which commands cannot
// run on: a null entry in one of its tables, or a project without its
// tables of workspaces, tenants and keys. The checksum does not catch such
// a file (it is only as good as whoever wrote the file), and the first
// command to reach the entry would panic on every node of the cluster.
func checkWellFormed(s *State) error {
	for _, id := range slices.Sorted(maps.Keys(s.Projects)) {
		p := s.Projects[id]
		if p == nil {
			return errors.Newf("project %q is null", id)
		}
		if p.Workspaces == nil || p.Tenants == nil || p.Keys == nil {
			return errors.Newf("project %q lacks its workspaces, tenants or keys", id)
		}
		for _, err := range []error{nullEntry("workspace", p.Workspaces), nullEntry("tenant", p.Tenants), nullEntry("key", p.Keys)} {
			if err != nil {
				return errors.Wrapf(err, "project %q", id)
			}
		}
	}
	for _, err := range []error{nullEntry("backend", s.Backends), nullEntry("database", s.Databases),
		nullEntry("deployment", s.Deployments), nullEntry("import", s.Imports)} {
		if err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.Deployments)) {
		if slices.Contains(s.Deployments[id].Results, nil) {
			return errors.Newf("deployment %q has a null result", id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.Imports)) {
		if slices.Contains(s.Imports[id].Tenants, nil) {
			return errors.Newf("import %q has a null tenant", id)
		}
	}
	return nil
}

// nullEntry returns an error naming the first null entry of m, if any.
func nullEntry[V any](what string, m map[string]*V) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] == nil {
			return errors.Newf("%s %q is null", what, k)
		}
	}
	return nil
}

func (b *Backup) decode() (*snapshotData, error) {
	var d snapshotData
	if err := json.Unmarshal(b.Snapshot, &d); err != nil {
		return nil, errors.Mark(errors.Wrap(err, "the backup's state cannot be decoded"), ErrBadBackup)
	}
	if d.State == nil {
		return nil, errors.Mark(errors.New("the backup holds no state"), ErrBadBackup)
	}
	return &d, nil
}

// Rebase returns the backup's snapshot, as Restore reads it, for a new
// cluster named clusterID: the state is the backup's but for its cluster
// ID. A state of a log version before cluster IDs (3) keeps none; the new
// cluster's first leader proposes one once it may.
func (b *Backup) Rebase(clusterID string) ([]byte, error) {
	if err := CheckClusterID(clusterID); err != nil {
		return nil, err
	}
	d, err := b.decode()
	if err != nil {
		return nil, err
	}
	if d.State.ActiveLogVersion() >= Since(CmdSetClusterID) {
		d.State.ClusterID = clusterID
	}
	data, err := json.Marshal(d)
	return data, errors.Wrap(err, "marshal the restored state")
}
