package node

import (
	"os"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"tdb/fsm"
)

// A metadata backup (fsm.Backup, GET /v1/cluster/backup) is restored as
// the first state of a new cluster: before raft starts, the backup's state
// is written to the empty raft dir as a snapshot whose configuration holds
// this node alone as a voter, and the stable store's term is set to the
// snapshot's. raft then starts from that snapshot as after a restart and
// elects this node; others join it as they join any cluster.
//
// The new cluster gets a new ID, so that nodes of the backed-up cluster
// still around (it may only be partly lost) and the restored one refuse
// each other instead of one's log overwriting the other's. Everything
// else, the log version included, is the backup's.

// restoreTerm is the term of the restored snapshot, and the stable store's
// current term: the node's first election is of the term after.
const restoreTerm = 1

// restoreBackup writes backup b into the empty raft stores as the state of
// a new cluster whose only server is self, and its new ID to identity.
func restoreBackup(b *fsm.Backup, self raft.ServerID, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, trans raft.Transport, identity *clusterIdentity) error {
	id, err := newClusterID()
	if err != nil {
		return err
	}
	data, err := b.Rebase(id)
	if err != nil {
		return errors.Wrap(err, "restore")
	}
	// Raft's first index is 1: a state that applied nothing is restored
	// at 1 all the same.
	index := max(b.AppliedIndex, 1)
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: self, Address: trans.LocalAddr()}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, restoreTerm, conf, index, trans)
	if err != nil {
		return errors.Wrap(err, "restore: create the raft snapshot")
	}
	if _, err := sink.Write(data); err != nil {
		_ = sink.Cancel()
		return errors.Wrap(err, "restore: write the raft snapshot")
	}
	if err := sink.Close(); err != nil {
		return errors.Wrap(err, "restore: write the raft snapshot")
	}
	if err := store.SetUint64([]byte("CurrentTerm"), restoreTerm); err != nil {
		return errors.Wrap(err, "restore: write the raft term")
	}
	// A state of a log version before cluster IDs holds none (Rebase): its
	// ID is pending, as a new cluster's, until its leader proposes it.
	if b.LogVersion < fsm.Since(fsm.CmdSetClusterID) {
		return identity.create()
	}
	return identity.write(id, true)
}

// checkRestoreDir refuses to restore into a data directory that holds
// anything: a backup starts a new node, never over one.
func checkRestoreDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errors.Wrapf(err, "restore: read the data directory %s", dir)
	}
	if len(entries) > 0 {
		return errors.Newf("restore: the data directory %s is not empty (it holds %s): a backup is restored into an empty one only; give a new --data-dir, or leave --restore out to restart the node restored there before", dir, entries[0].Name())
	}
	return nil
}
