// Command chaos is the chaos harness of tdb.
//
// `go run ./chaos up` reads the Procfile at the repo root, builds bin/tdb,
// and runs every process (or the ones named) with its output prefixed by
// the process name, until Ctrl-C, which stops them all (SIGTERM, then
// SIGKILL after a grace period). A process that exits is reported; the
// others keep running, so a node can be killed and restarted by hand.
//
// `go run ./chaos run --duration 60s [--seed N] [--out DIR]` (or just
// `go run ./chaos --duration 60s`) proves the cluster's promises under
// faults:
//
//   - rewrite.go turns the Procfile's pg and three `tdb server` lines into
//     hermetic commands (free loopback ports, data dirs in a temp dir, no
//     PROXY protocol); cluster.go starts them from a freshly built binary;
//   - netproxy.go puts a TCP proxy in front of each node's raft listener
//     (the node advertises it with --raft-advertise) that knows, from
//     /proc, which node dialled, so a node can be cut off from the others;
//   - load.go drives keys (create, revoke, wire logins), tenants (create,
//     get, delete), row inserts through the wire proxy and failed logins
//     that trigger bans, through random nodes, recording every operation's
//     invocation and completion (history.go);
//   - faults.go, from the seed, kills the leader with SIGKILL and restarts
//     it, SIGSTOPs and SIGCONTs a node, and partitions the leader or a
//     follower;
//   - after healing, check.go waits for the replicas to converge and checks
//     that no acknowledged write is lost (HTTP API of every node, rows in
//     the backend PostgreSQL), that the FSMs and ban tables hash alike
//     (/internal/hash), that no login was accepted with a key after its
//     revocation was acknowledged, and, with porcupine, that the key and
//     tenant history is linearizable (model.go);
//   - it prints each fault with its time, ends with
//     `chaos: N ops, L lost, D divergent, linearizable: yes|no`, exits 1 on
//     any violation, and writes report.json, history.json, history.html
//     (porcupine's visualisation) and the nodes' logs under --out.
package main
