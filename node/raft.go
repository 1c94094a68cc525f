package node

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"tdb/fsm"
	"tdb/httpapi"
)

// ErrNotLeader is returned by operations that only the raft leader can do,
// when this node is not the leader. Forwarding happens one layer up.
var ErrNotLeader = errors.New("not the raft leader")

// RaftConfig holds what opening the raft instance needs. Timing knobs are
// fields so tests can shrink them.
type RaftConfig struct {
	NodeID    string
	Dir       string // raft.db and snapshots live here
	BindAddr  string // host:port for the raft TCP transport
	Advertise string // address other nodes dial; defaults to the bound address
	Bootstrap bool   // bootstrap a single-voter cluster when there is no raft state yet
	Secret    string // cluster secret: raft runs over mutually authenticated TLS (rafttls.go); "" plain TCP
	// Restore, when set, starts a new cluster of this node alone whose
	// state is the backup's, under a new cluster ID (restore.go). The raft
	// dir must hold no state.
	Restore   *fsm.Backup
	LogOutput io.Writer

	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	SnapshotInterval time.Duration
	ApplyTimeout     time.Duration
}

// Replica is this node's raft instance with its FSM and stores.
type Replica struct {
	Raft      *raft.Raft
	FSM       *fsm.FSM
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	// internalLn takes the internal HTTP calls that come over the raft
	// listener's TLS (nil without a cluster secret).
	internalLn net.Listener
	cfg        RaftConfig
	identity   *clusterIdentity

	// The last command found in the log (cmdAt), and the last entry then
	// (cmdLast, cmdTerm): a login asks for it, and the log seldom moves.
	cmdMu                   sync.Mutex
	cmdAt, cmdLast, cmdTerm uint64
}

// OpenReplica opens (or creates) the raft state in cfg.Dir and starts raft.
// A node with no raft state bootstraps only when cfg.Bootstrap is set, so a
// node meant to join never starts a second cluster.
func OpenReplica(cfg RaftConfig) (*Replica, error) {
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, errors.Wrapf(err, "create raft dir %s", cfg.Dir)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: cfg.LogOutput})
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	rc.SnapshotThreshold = 1024

	snaps, err := raft.NewFileSnapshotStore(cfg.Dir, 3, cfg.LogOutput)
	if err != nil {
		return nil, errors.Wrap(err, "open raft snapshot store")
	}
	list, restorable, err := restorableSnapshot(snaps)
	if err != nil {
		return nil, err
	}
	base := restorable
	if base == 0 && len(list) > 0 {
		base = list[0].Index // none can be read: raft fails to load any
	}
	logPath := filepath.Join(cfg.Dir, "raft.db")
	store, err := openLogStore(logPath, base)
	if err != nil {
		return nil, err
	}
	if err := checkLogStore(store, list, restorable, logPath, filepath.Join(cfg.Dir, "snapshots")); err != nil {
		store.Close()
		return nil, err
	}
	var adv net.Addr
	if cfg.Advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.Advertise); err != nil {
			store.Close()
			return nil, errors.Wrapf(err, "resolve raft advertise address %s", cfg.Advertise)
		}
	}
	f := fsm.New()
	identity, err := openClusterIdentity(cfg.Dir, f)
	if err != nil {
		store.Close()
		return nil, err
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return nil, errors.Wrap(err, "inspect raft state")
	}
	if cfg.Restore != nil && (has || identity.Local() != "") {
		store.Close()
		return nil, errors.Newf("restore: %s already holds raft state: a backup is restored into an empty data directory only", cfg.Dir)
	}
	if !has && cfg.Bootstrap && identity.committedID() {
		// It would bootstrap a new, empty cluster over the one it had
		// (a joiner takes the cluster's state from the others).
		store.Close()
		return nil, errors.Newf("raft log store %s is empty and there is no snapshot, but %s says this node belonged to cluster %s: its metadata was lost (the file emptied or replaced); restore the data directory from a backup, or remove %s and start the node with --join to the others (without --join it starts a new, empty cluster)",
			logPath, identity.path, identity.Local(), cfg.Dir)
	}
	if !has && cfg.Restore == nil {
		// A new cluster gets a new ID, also over a file an earlier one left;
		// a node about to join has none until it learns the cluster's.
		err := identity.clear()
		if cfg.Bootstrap {
			err = identity.create()
		}
		if err != nil {
			store.Close()
			return nil, err
		}
	}
	transport, internalLn, err := newRaftTransport(cfg.BindAddr, adv, cfg.Secret, identity, cfg.LogOutput)
	if err != nil {
		store.Close()
		return nil, errors.Wrapf(err, "listen raft on %s", cfg.BindAddr)
	}
	if cfg.Restore != nil {
		if err := restoreBackup(cfg.Restore, rc.LocalID, store, snaps, transport, identity); err != nil {
			transport.Close()
			store.Close()
			return nil, err
		}
		has = true // started from its snapshot: nothing to bootstrap
	}
	r, err := raft.NewRaft(rc, f, store, store, snaps, transport)
	if newer := f.NewerSnapshot(); newer != nil {
		// Downgraded below its cluster: neither damaged nor to be run from
		// an older snapshot beside it.
		if err == nil {
			_ = r.Shutdown().Error()
		}
		transport.Close()
		store.Close()
		return nil, errors.Wrap(newer, "start raft")
	}
	if err != nil {
		transport.Close()
		store.Close()
		if strings.Contains(err.Error(), "failed to load any existing snapshots") {
			return nil, errors.Wrapf(err, "start raft: no snapshot in %s could be restored (damaged?): move the damaged snapshot's directory out of it to start from an older one, restore the data directory from a backup, or remove it and start the node with --join to the others",
				filepath.Join(cfg.Dir, "snapshots"))
		}
		return nil, errors.Wrap(err, "start raft")
	}
	rep := &Replica{Raft: r, FSM: f, store: store, transport: transport, internalLn: internalLn, cfg: cfg, identity: identity}
	identity.mu.Lock()
	identity.alone = func() bool {
		cf := r.GetConfiguration()
		return cf.Error() != nil || len(cf.Configuration().Servers) <= 1
	}
	identity.mu.Unlock()
	if cf := r.GetConfiguration(); cf.Error() == nil && len(cf.Configuration().Servers) > 1 {
		identity.joined()
	}
	if cfg.Bootstrap && !has {
		boot := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: transport.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			rep.Close()
			return nil, errors.Wrap(err, "bootstrap raft")
		}
	}
	return rep, nil
}

// ClusterID is the ID of the cluster this node belongs to, "" while it
// knows none.
func (r *Replica) ClusterID() string { return r.identity.ID() }

// lastCommandIndex returns the index of the last command in the log: what
// a reader waits for its FSM to have applied. The FSM sees commands only; a
// new leader's no-op and membership changes are raft's own entries, and a
// wait for one of their indexes would last until the next command.
func (r *Replica) lastCommandIndex() (uint64, error) {
	last := r.Raft.LastIndex()
	if last == 0 {
		return 0, nil
	}
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
	var l raft.Log
	err := r.store.GetLog(last, &l)
	if err == nil && l.Index == r.cmdLast && l.Term == r.cmdTerm {
		return r.cmdAt, nil // the log has not moved since the last look
	}
	lastTerm := l.Term
	at := uint64(0) // no command yet
	for i := last; i > 0; i-- {
		if err := r.store.GetLog(i, &l); err != nil {
			if !errors.Is(err, raft.ErrLogNotFound) {
				return 0, errors.Wrapf(err, "read raft log entry %d", i)
			}
			// The rest is compacted into a snapshot: the FSM, restored
			// from it or having applied it, holds those commands.
			at = r.FSM.AppliedIndex()
			break
		}
		if l.Type == raft.LogCommand {
			at = i
			break
		}
	}
	r.cmdAt, r.cmdLast, r.cmdTerm = at, last, lastTerm
	return at, nil
}

// logStoreLockWait bounds the wait for the log store's file lock, which
// another process on the same data directory holds.
const logStoreLockWait = 2 * time.Second

// openLogStore opens the raft log and stable store at path. A file another
// process holds, or one too damaged to open, is an error saying so (the
// store's own code panics on some damage). Entries up to base, the
// snapshot raft starts from (restorableSnapshot), may be missing: a follower
// that installed its leader's snapshot keeps the entries its log had
// before it (raft compacts up to TrailingLogs behind the last of them)
// and appends the leader's after it, and raft never reads those between.
func openLogStore(path string, base uint64) (store *raftboltdb.BoltStore, err error) {
	// opened is what to close when an error follows the open: a return
	// sets store to nil before the deferred call runs.
	var opened *raftboltdb.BoltStore
	defer func() {
		if r := recover(); r != nil {
			store, err = nil, errors.Newf("raft log store %s is damaged: %v; restore the data directory from a backup, or remove it and join the node to the cluster again", path, r)
		}
		if err != nil && opened != nil {
			opened.Close()
		}
	}()
	opened, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: logStoreLockWait}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, errors.Newf("raft log store %s is in use by another process: is another tdb running on this data directory?", path)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "open raft log store %s", path)
	}
	// Every entry is read once here, where a damaged page is an error:
	// raft reads them later in its own goroutines, where the store's
	// panic would end the process.
	first, err := opened.FirstIndex()
	if err != nil {
		return nil, errors.Wrapf(err, "read raft log store %s", path)
	}
	last, err := opened.LastIndex()
	if err != nil {
		return nil, errors.Wrapf(err, "read raft log store %s", path)
	}
	for i := first; i != 0 && i <= last; i++ {
		var l raft.Log
		err := opened.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) && i <= base {
			i = base // a gap before the snapshot: go on after it
			continue
		}
		if err != nil {
			return nil, errors.Newf("raft log store %s is damaged: entry %d of %d..%d: %v; restore the data directory from a backup, or remove it and join the node to the cluster again", path, i, first, last, err)
		}
	}
	return opened, nil
}

// restorableSnapshot lists the snapshots, newest first, and returns the
// index of the newest raft can open (it tries them in that order), 0 when
// none. Opening one reads it whole (its checksum).
func restorableSnapshot(snaps raft.SnapshotStore) ([]*raft.SnapshotMeta, uint64, error) {
	list, err := snaps.List()
	if err != nil {
		return nil, 0, errors.Wrap(err, "list raft snapshots")
	}
	for _, m := range list {
		if _, rc, err := snaps.Open(m.ID); err == nil {
			rc.Close()
			return list, m.Index, nil
		}
	}
	return list, 0, nil
}

// checkLogStore refuses a log store that lost its contents while snapshots
// remain beside it (a file emptied or replaced): raft would start from the
// last snapshot and silently drop every acknowledged write after it, and
// forget the term and vote it promised. It also refuses a compacted log
// whose snapshot is missing or cannot be read (snapDir names where they
// are; list is theirs, newest first, and restorable the index of the
// newest that can be read, restorableSnapshot): raft would start from an
// older snapshot, or none, and its store panics on the entries in between.
func checkLogStore(store *raftboltdb.BoltStore, list []*raft.SnapshotMeta, restorable uint64, path, snapDir string) error {
	first, err := store.FirstIndex()
	if err != nil {
		return errors.Wrapf(err, "read raft log store %s", path)
	}
	if first > 1 && restorable+1 < first && (restorable > 0 || len(list) == 0) {
		return errors.Newf("raft log store %s starts at entry %d, but the newest snapshot in %s that can be read ends at entry %d: the entries between are lost (a snapshot is missing or damaged); put the missing snapshot back, restore the data directory from a backup, or remove it and start the node with --join to the others",
			path, first, snapDir, restorable)
	}
	if len(list) == 0 {
		return nil
	}
	last, err := store.LastIndex()
	if err != nil {
		return errors.Wrapf(err, "read raft log store %s", path)
	}
	term, err := store.GetUint64([]byte("CurrentTerm"))
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return errors.Wrapf(err, "read raft log store %s", path)
	}
	if last == 0 && term == 0 {
		return errors.Newf("raft log store %s is empty but snapshots up to index %d are beside it: writes after the snapshot would be lost; restore the data directory from a backup, or remove it and join the node to the cluster again", path, list[0].Index)
	}
	return nil
}

// Addr is the raft transport's advertised address.
func (r *Replica) Addr() string { return string(r.transport.LocalAddr()) }

// IsLeader reports whether this replica is the raft leader now.
func (r *Replica) IsLeader() bool { return r.Raft.State() == raft.Leader }

// Apply commits a command on the leader and returns the applier's value and
// the raft index it committed at. On a follower it returns ErrNotLeader.
func (r *Replica) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	var err error
	r.FSM.View(func(s *fsm.State) { err = s.CheckProposable(t) })
	if err != nil {
		return nil, 0, err
	}
	data, err := fsm.Encode(t, payload)
	if err != nil {
		return nil, 0, err
	}
	timeout := r.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	f := r.Raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return nil, 0, applyFailure(t, err)
	}
	resp, ok := f.Response().(fsm.Response)
	if !ok {
		return nil, f.Index(), errors.Newf("apply %s: unexpected response %T", t, f.Response())
	}
	return resp.Value, f.Index(), resp.Err
}

// applyFailure is the error of a command raft did not apply: not the leader
// (nothing appended: another node may take it), or the leadership lost
// after the entry was appended (the next leader may commit it: the outcome
// is unknown, and a retry could apply it twice).
func applyFailure(t fsm.CommandType, err error) error {
	err = errors.Wrapf(err, "apply %s", t)
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return errors.Mark(err, ErrNotLeader)
	case errors.Is(err, raft.ErrLeadershipLost):
		return errors.Mark(err, httpapi.ErrOutcomeUnknown)
	}
	return err
}

// WaitLeader blocks until some node is leader (this one or another) or ctx ends.
func (r *Replica) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := r.Raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Wrap(ctx.Err(), "wait for a raft leader")
		case <-t.C:
		}
	}
}

// Close shuts raft down and closes the stores.
func (r *Replica) Close() error {
	err := r.Raft.Shutdown().Error()
	r.transport.Close()
	if cerr := r.store.Close(); err == nil {
		err = cerr
	}
	return err
}
