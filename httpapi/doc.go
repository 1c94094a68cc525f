// Package httpapi is tdb's control plane: a JSON REST API under /v1 (gorilla/mux)
// over the replicated state, authenticated by bearer keys.
//
// Every request is authenticated into a caller (auth.go): the cluster operator's
// admin key, or a project key looked up by the hash of its secret. A caller's
// role (admin | write | read) and scope (project | workspace | tenant) decide
// what it may read and change: reads need any role within scope, every mutation
// needs role admin within scope, and a key can only mint keys within its own
// reach (no escalation).
//
// Reads are served from the local FSM replica; writes are proposed through
// Cluster.Apply (which forwards to the raft leader) and then read back from the
// local replica once it has applied the entry, so every write response carries
// the raft_index it committed at. Ids, secrets, salts and role passwords are made
// here (secrets.go) and travel inside the command; the physical placement of new
// databases is decided here too (placement.go).
package httpapi
