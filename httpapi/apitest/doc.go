// Package apitest provides a fake httpapi.Cluster for tests: a real *fsm.FSM
// with commands applied directly (no raft, no network) and, since no
// reconciler runs, a provisioner that settles new physical databases.
// Both the httpapi tests and the CLI tests in cmd/tdb use it.
package apitest
