package apitest

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"

	"tdb/fsm"
	"tdb/httpapi"
	"tdb/querylog"
)

// Cluster is a single in-process "node" implementing httpapi.Cluster.
type Cluster struct {
	Admin  string // the operator's admin key
	Wire   string // the wire address put in connection strings
	NodeID string

	f     *fsm.FSM
	mu    sync.Mutex // serializes Apply, as raft would
	index uint64
	fail  func(fsm.CommandType) error
}

// FailApply makes Apply return fail's non-nil errors (a lost leader, a raft
// timeout) instead of committing; nil restores normal commits.
func (c *Cluster) FailApply(fail func(fsm.CommandType) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = fail
}

var _ httpapi.Cluster = (*Cluster)(nil)

// New returns a cluster over an empty state.
func New(adminKey string) *Cluster {
	return &Cluster{Admin: adminKey, Wire: "127.0.0.1:5432", NodeID: "node1", f: fsm.New()}
}

// FSM is the replica.
func (c *Cluster) FSM() *fsm.FSM { return c.f }

// Apply encodes the command and applies it at the next index, as a committed
// raft entry would be.
func (c *Cluster) Apply(_ context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	data, err := fsm.Encode(t, payload)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(t); err != nil {
			return nil, 0, err
		}
	}
	c.index++
	resp := c.f.Apply(&raft.Log{Type: raft.LogCommand, Index: c.index, Data: data}).(fsm.Response)
	return resp.Value, c.index, resp.Err
}

// Status describes the one node, the leader.
func (c *Cluster) Status(context.Context) (httpapi.ClusterStatus, error) {
	applied := c.f.AppliedIndex()
	return httpapi.ClusterStatus{
		LeaderID: c.NodeID, NodeID: c.NodeID, AppliedIndex: applied,
		Nodes: []httpapi.NodeStatus{{
			ID: c.NodeID, RaftAddr: "127.0.0.1:7000", HTTPAddr: "127.0.0.1:8080", WireAddr: c.Wire,
			GossipAddr: "127.0.0.1:7946", Voter: true, Alive: true, Role: "leader", RaftIndex: applied,
		}},
	}, nil
}

// AdminKey is the operator's key.
func (c *Cluster) AdminKey() string { return c.Admin }

// WireAddr is the wire proxy address.
func (c *Cluster) WireAddr() string { return c.Wire }

// Outcome decides what provisioning a database achieves: a status (ready or
// failed) and, for failed, an error text. An empty status leaves the database
// provisioning.
type Outcome func(d *fsm.Database) (status, errText string)

// Ready provisions every database successfully.
func Ready(*fsm.Database) (string, string) { return fsm.StatusReady, "" }

// Provision stands in for the reconciler until ctx ends: every database that
// appears in status provisioning is settled as outcome decides.
func (c *Cluster) Provision(ctx context.Context, outcome Outcome) {
	for {
		changed := c.f.Changed()
		var cmds []fsm.SetDatabaseStatus
		c.f.View(func(st *fsm.State) {
			for _, d := range st.Databases {
				if d.Status == fsm.StatusProvisioning {
					status, text := outcome(d)
					if status == "" {
						continue
					}
					cmds = append(cmds, fsm.SetDatabaseStatus{Name: d.Name, Status: status, Error: text})
				}
			}
		})
		for _, cmd := range cmds {
			_, _, _ = c.Apply(ctx, fsm.CmdSetDatabaseStatus, cmd)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// WithQueryLog is a Cluster that keeps a query log, as a node does.
type WithQueryLog struct {
	*Cluster
	Log *querylog.Log
}

// QueryLog implements httpapi.QueryLogSource.
func (c WithQueryLog) QueryLog() *querylog.Log { return c.Log }
