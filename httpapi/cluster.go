package httpapi

import (
	"context"
	"net/http"

	"tdb/fsm"
)

// Cluster is what the control plane needs from the node it runs on.
type Cluster interface {
	// FSM is the local replica, for reads (served locally) and waits.
	FSM() *fsm.FSM
	// Apply commits a command through the raft leader (forwarding when this
	// node is a follower) and returns the applier's value and the raft index
	// it committed at. A business failure is returned as *fsm.Error.
	Apply(ctx context.Context, t fsm.CommandType, payload any) (value any, index uint64, err error)
	// Status describes the cluster for `tdb cluster status`.
	Status(ctx context.Context) (ClusterStatus, error)
	// AdminKey is the cluster operator's key (may be empty: no operator access).
	AdminKey() string
	// WireAddr is the host:port clients use to reach the wire proxy, for
	// connection strings.
	WireAddr() string
}

// Syncer is implemented by a Cluster whose local replica may lag the
// leader's: Sync returns once the replica has applied every write
// acknowledged before the call, or why it could not. Without it the local
// replica is taken as current (a lone process).
type Syncer interface {
	Sync(ctx context.Context) error
}

// Healther is implemented by a Cluster that answers /healthz from this
// node alone. Without it /healthz asks for the whole cluster's Status,
// which calls every other node: a load balancer checks each node every
// second, and anyone may call /healthz.
type Healther interface {
	// Health returns this node's ID, or why it cannot serve.
	Health() (nodeID string, err error)
}

// AuthGuard is implemented by a Cluster that bans client IPs after repeated
// failed authentications, as the wire proxy does: the HTTP API refuses a
// banned IP, and counts its wrong keys toward the same bans.
type AuthGuard interface {
	// ClientIP is the address of the request's client (behind a trusted
	// load balancer, the one it names).
	ClientIP(r *http.Request) string
	// Banned reports whether ip is banned, with the seconds left and the
	// text the wire proxy gives a banned client.
	Banned(ip string) (left int64, msg string, banned bool)
	// AuthFailed counts a failed authentication from ip.
	AuthFailed(ip string)
}

// QueryAdmitter is implemented by a Cluster that keeps the wire proxy's
// connection limits: a call of the query endpoint, which opens a backend
// connection of its own, holds a connection of its client's IP and of the
// tenant's database while it runs.
type QueryAdmitter interface {
	// AdmitQuery takes the slots, or returns the wire proxy's refusal
	// (SQLSTATE 53300); release gives them back.
	AdmitQuery(ip, database, wireName string, maxConnections int64) (release func(), refusal string)
}

// BackendChecker is implemented by a Cluster that can try a backend before
// it is registered (the node connects to it); without it any well-formed URL
// is accepted.
type BackendChecker interface {
	// CheckBackend returns why the server at url cannot be a backend, or nil.
	CheckBackend(ctx context.Context, url string) error
}

// ClusterStatus is the JSON of `tdb cluster status`.
type ClusterStatus struct {
	LeaderID     string `json:"leader_id"`
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	// LogVersion is the raft log version the cluster runs; a node whose
	// build applies less is not made a voter (a rolling upgrade ends when
	// it equals every node's).
	LogVersion uint16 `json:"log_version"`
	// ClusterID names the cluster for good: a node that advertises another
	// one (a node that bootstrapped a cluster of its own after its data dir
	// was emptied) is refused by this cluster's raft, and it by them. ""
	// until the cluster runs log version 3.
	ClusterID string `json:"cluster_id"`
	// UnguardedDatabases counts the ready tenant databases and workspaces
	// that do not hold the current DDL guard yet: those provisioned before
	// it, which the leader brings up to it once the cluster runs log
	// version 2 (a failed one is retried every minute; its reason is in
	// the leader's log).
	UnguardedDatabases int          `json:"unguarded_databases"`
	Nodes              []NodeStatus `json:"nodes"`
}

// NodeStatus is one member of the cluster.
type NodeStatus struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	WireAddr   string `json:"wire_addr"`
	GossipAddr string `json:"gossip_addr"`
	Voter      bool   `json:"voter"`
	Alive      bool   `json:"alive"`
	Role       string `json:"role"` // leader | follower | candidate | unknown
	RaftIndex  uint64 `json:"raft_index"`
	// LogVersion is the newest raft log version the node's build applies,
	// as it advertises (0: not known).
	LogVersion uint16 `json:"log_version"`
	// ClusterID is the cluster the node says it belongs to ("": not known).
	ClusterID string `json:"cluster_id"`
}
