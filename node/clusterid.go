package node

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
)

// clusterIdentity is the ID of the cluster this node belongs to
// (fsm.SetClusterID), as raft's TLS handshake and gossip tell it to other
// nodes. The replicated state holds it, but a restarted node applies its
// log again only once a leader tells it what is committed, and raft talks
// before that: so the node also keeps it in a file of its raft dir.
//
// A node that bootstraps a cluster draws an ID and writes it to the file,
// pending, before raft starts; its first leader proposes it. A leader that
// finds the state without an ID (a cluster bootstrapped by a build from
// before IDs, or a leader that did not bootstrap) proposes the ID it has
// pending itself, else a new one. A pending ID is not told to anyone:
// the state may come to hold another (the leader did not see it), and a
// node that refused that cluster could never learn it. Once the state
// holds an ID, every node writes it to the file as committed.
type clusterIdentity struct {
	fsm  *fsm.FSM
	path string

	mu        sync.Mutex
	local     string // the file's ID; "" when there is no file yet
	committed bool   // the state held local when it was written
	// fresh: this node bootstrapped its cluster, its ID is pending, and
	// its raft configuration has held no other server since. Until its ID is
	// committed it then admits no node of another cluster (a node whose
	// data dir was emptied must not be absorbed by the cluster it left,
	// whose log would overwrite entries it applied); later, a pending ID
	// may be replaced by the one its cluster commits, and binds nobody.
	fresh bool
	// alone reports whether the raft configuration holds this server only
	// (nil: not known yet, taken as alone).
	alone func() bool
}

// pendingMark follows a pending ID in the file.
const pendingMark = " pending"

// openClusterIdentity reads the file in dir, if there is one.
func openClusterIdentity(dir string, f *fsm.FSM) (*clusterIdentity, error) {
	c := &clusterIdentity{fsm: f, path: filepath.Join(dir, "cluster-id")}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, errors.Wrap(err, "read the cluster id")
	}
	id, pending := strings.CutSuffix(strings.TrimSpace(string(b)), pendingMark)
	if err := fsm.CheckClusterID(id); err != nil {
		return nil, errors.Wrapf(err, "%s is damaged: restore it, or remove it if the raft state beside it is the cluster's", c.path)
	}
	// A pending ID is this node's own bootstrap: until its raft
	// configuration is read and holds another server, it counts as fresh.
	c.local, c.committed, c.fresh = id, !pending, pending
	return c, nil
}

// ID is the cluster's ID, "" while this node knows none that the state
// held (a joiner before its first entries, a cluster of a build from
// before IDs, a new cluster before its first leader recorded it).
func (c *clusterIdentity) ID() string {
	if id := c.fsm.ClusterID(); id != "" {
		return id
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.committed {
		return ""
	}
	return c.local
}

// Admits reports whether a raft peer that says it belongs to cluster theirs
// ("" when it says nothing) may talk to this node, and the ID it was
// checked against.
//
// A node that bootstrapped its cluster and is still alone in it admits
// only its own cluster's peers, also none that says nothing (a build from
// before IDs, or a cluster that has none yet): no node of its cluster has
// a reason to reach it yet, and any other one would have it follow a log
// it did not apply.
func (c *clusterIdentity) Admits(theirs string) (mine string, ok bool) {
	if id := c.fsm.ClusterID(); id != "" {
		return id, theirs == "" || theirs == id
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	alone := c.alone == nil || c.alone()
	if c.fresh && !alone {
		c.fresh = false // joined, though not as the leader that reconciled
	}
	switch {
	case c.local == "" || (!c.committed && !c.fresh):
		return "", true
	case theirs == "":
		return c.local, !c.fresh
	default:
		return c.local, theirs == c.local
	}
}

// Own is the ID this node checks other nodes against when it makes them
// voters: the committed one, else the one it has pending; "" for none.
func (c *clusterIdentity) Own() string {
	if id := c.fsm.ClusterID(); id != "" {
		return id
	}
	return c.Local()
}

// joined records that the raft configuration holds other servers.
func (c *clusterIdentity) joined() {
	c.mu.Lock()
	c.fresh = false
	c.mu.Unlock()
}

// Local is the ID in the file, committed or pending; "" without one.
func (c *clusterIdentity) Local() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

// committedID reports whether the file holds an ID the cluster's state
// held: this node then applied entries, and kept them in its raft state.
func (c *clusterIdentity) committedID() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local != "" && c.committed
}

// create draws a new cluster's ID and writes it as pending, before the
// node bootstraps.
func (c *clusterIdentity) create() error {
	id, err := newClusterID()
	if err != nil {
		return err
	}
	if err := c.write(id, false); err != nil {
		return err
	}
	c.mu.Lock()
	c.fresh = true
	c.mu.Unlock()
	return nil
}

// newClusterID draws a new cluster ID: 16 random bytes in hex.
func newClusterID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", errors.Wrap(err, "draw a cluster id")
	}
	return hex.EncodeToString(b), nil
}

// clear removes the file: a node without raft state knows no cluster.
func (c *clusterIdentity) clear() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.Remove(c.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return errors.Wrap(err, "remove the cluster id")
	}
	c.local, c.committed, c.fresh = "", false, false
	return nil
}

// persist writes the state's ID to the file as committed, when the file
// does not say so yet. It reports whether the file changed.
func (c *clusterIdentity) persist() (bool, error) {
	id := c.fsm.ClusterID()
	c.mu.Lock()
	same := id == "" || (id == c.local && c.committed)
	c.mu.Unlock()
	if same {
		return false, nil
	}
	return true, c.write(id, true)
}

// write replaces the file with id, durably.
func (c *clusterIdentity) write(id string, committed bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	line := id
	if !committed {
		line += pendingMark
	}
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return errors.Wrap(err, "write the cluster id")
	}
	_, err = f.WriteString(line + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(c.path))
	}
	if err != nil {
		return errors.Wrap(err, "write the cluster id")
	}
	c.local, c.committed = id, committed
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
