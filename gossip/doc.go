// Package gossip runs the node's membership gossip (hashicorp/memberlist).
// Each node advertises a Meta (its id and its raft, HTTP and wire
// addresses); every node keeps a table of the members it has heard of, alive,
// failed or left. memberlist's callbacks only enqueue events; one goroutine
// applies them to the table and pokes the subscriber (node), whose leader loop
// turns the table into raft membership changes. The table is also resynced
// from memberlist on a timer, so a dropped event costs a delay, never a
// wrong state. Known peers are saved to a file so a restarted node can rejoin.
package gossip
