// Package testcluster starts an in-process tdb cluster for tests: several
// nodes on 127.0.0.1 random ports with temp data dirs and shrunken timing
// knobs, one shared test PostgreSQL backend and a demo project. Nodes can be
// stopped and restarted on the same addresses, and (WithRaftProxies) each
// node's raft traffic can be cut by a fault-injecting TCP proxy.
package testcluster
