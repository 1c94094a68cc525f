package fsm

import (
	"fmt"

	"github.com/cockroachdb/errors"
)

// Log versions: rolling upgrades. A build applies the commands of log
// versions up to LogVersion. During a rolling upgrade old and new builds
// replicate one log, and an old build that met a command it does not know
// would have to stop (skipping it would make it diverge). So a command
// type new in version N is proposed only once the cluster's log version
// (State.LogVersion) is N, and the leader raises that version (with
// SetLogVersion) only when every raft server advertises a build that
// applies it; a node whose build is older than the cluster's version is
// not made a voter.

// LogVersion is the newest log version this build applies. Version 2
// brought SetLogVersion, SetDatabaseGuard, names that end in "_" refused
// (names.go), and SetDatabaseStatus taken only while a database is being
// provisioned (apply_tenant.go); version 3, SetClusterID; version 4, no
// key made for a tenant being deleted (apply_key.go), and a removed tenant's
// name taken from every key (apply_tenant.go); version 5, the session
// settings of a captured blueprint version (apply_workspace.go); version 6,
// a deleted tenant taken out of the deployments and imports still to do
// it, out of an import's retry (apply_tenant.go, apply_import.go) and out
// of those its proposer listed it in just before the deletion
// (apply_deployment.go, apply_import.go), and the time of RemoveBackend
// (apply_backend.go); from it, nodes also make their internal calls over
// the raft listener's TLS (node/internal.go); version 7, CompactState
// (compact.go), and the time of a node's last batch of failed logins kept
// with its batch IDs (bans.go); version 8 brings no command: from it, tenant
// workspaces keep a journal of their DDL (guard version 4,
// actors/backend/journal.go), whose capture ids every node's proxy records
// versions under and whose rows it deletes once recorded.
const LogVersion uint16 = 8

// since gives the log version a command type first appeared in; types not
// listed are of version 1, the log before versions were counted.
var since = map[CommandType]uint16{
	CmdSetLogVersion:    2,
	CmdSetDatabaseGuard: 2,
	CmdSetClusterID:     3,
	CmdCompactState:     7,
}

// Since returns the log version a command type first appeared in.
func Since(t CommandType) uint16 {
	if v, ok := since[t]; ok {
		return v
	}
	return 1
}

// ErrUpgradeInProgress marks a command refused because the cluster's log
// version is older than the command's: some node still runs an older build.
var ErrUpgradeInProgress = errors.New("the cluster is being upgraded")

// ActiveLogVersion is the log version the cluster runs: what every
// replica's build applies.
func (s *State) ActiveLogVersion() uint16 {
	if s.LogVersion == 0 {
		return 1
	}
	return s.LogVersion
}

// CheckProposable refuses a command of a log version the cluster does not
// run yet. SetLogVersion itself is checked by the leader against what every
// server advertises instead.
func (s *State) CheckProposable(t CommandType) error {
	if t == CmdSetLogVersion {
		return nil
	}
	if v, active := Since(t), s.ActiveLogVersion(); v > active {
		return errors.Mark(errors.Newf("%s needs cluster log version %d and the cluster runs %d: some node runs an older build; upgrade every node first", t, v, active), ErrUpgradeInProgress)
	}
	return nil
}

// SetLogVersion raises the cluster's log version. The leader proposes it
// once every raft server advertises a build that applies Version; it never
// lowers the version. Response: the active version after it.
type SetLogVersion struct {
	Version uint16 `json:"version"`
}

func init() {
	register(CmdSetLogVersion, applySetLogVersion)
}

func applySetLogVersion(s *State, _ uint64, c *SetLogVersion) (any, error) {
	if c.Version > LogVersion {
		// Every replica that reaches this entry stops here alike until it
		// runs a newer build: applying anything after it could diverge.
		panic(fmt.Sprintf("fsm: the cluster moved to log version %d and this build applies up to %d: upgrade this node", c.Version, LogVersion))
	}
	if c.Version > s.ActiveLogVersion() {
		s.LogVersion = c.Version
	}
	return s.ActiveLogVersion(), nil
}

// ErrNewerLogVersion marks a snapshot refused as of a cluster log version
// newer than this build's: the node was downgraded below its cluster.
var ErrNewerLogVersion = errors.New("snapshot of a newer cluster log version")

// checkRestorable refuses a snapshot of a cluster whose log version is newer
// than this build.
func checkRestorable(s *State) error {
	if v := s.ActiveLogVersion(); v > LogVersion {
		return errors.Mark(errors.Newf("restore: the snapshot is of cluster log version %d and this build applies up to %d: upgrade this node", v, LogVersion), ErrNewerLogVersion)
	}
	return nil
}
