// Package node assembles one tdb node: the raft replica and its FSM, the
// leader-only reconciler, the HTTP control plane and the wire proxy listener.
// It implements httpapi.Cluster for the control plane. Every node is
// identical; `tdb dev` runs one bootstrapped node beside a local PostgreSQL.
package node
