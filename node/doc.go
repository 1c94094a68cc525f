// Package node assembles one tdb node: the raft replica and its FSM, the
// leader-only reconciler, the HTTP control plane and the wire proxy listener.
// It implements httpapi.Cluster for the control plane. Every node is
// identical; `tdb dev` runs one bootstrapped node beside a local PostgreSQL.
//
// In a cluster (cluster.go) a node gossips its addresses (package gossip);
// the leader's membership loop turns gossip members into raft voters. A
// follower forwards writes to the leader over the internal API (internal.go,
// /internal/* on the HTTP listener, authenticated with the cluster secret)
// and waits until it has applied them; logins and HTTP calls that meet an
// unknown key first catch up with the leader; a node cut off from the leader
// refuses new logins (fail closed); cancel requests are routed to the node
// that holds the session.
//
// A metadata backup (fsm.Backup, taken by GET /v1/cluster/backup once the
// node has caught up: Sync) is restored into an empty data directory as
// the snapshot of a new one-voter cluster under a new ID (restore.go).
package node
