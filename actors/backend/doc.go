// Package backend runs admin SQL against a backend PostgreSQL server as its
// superuser: it provisions one physical database with its native roles
// (Ensure, idempotent and convergent), drops them (Drop), checks the server
// (Ping), and runs deployment work as the database's owner role (RunAsOwner).
//
// Each database <db> has a NOLOGIN owner role <db>_owner that owns the
// database, its public schema and everything deployments create, and three
// LOGIN roles the proxy signs in as: <db>_admin, <db>_write, <db>_read. Their
// grants enforce the key roles (see grants.go). It knows nothing of raft or
// the FSM: callers pass names and passwords in.
//
// Leader work passes its cluster and raft term in its context (WithFence):
// its connections are then fenced, refused or terminated on a server where
// a leader of a later term has acted (fence.go).
package backend
