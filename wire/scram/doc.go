// Package scram implements the server side of SCRAM-SHA-256 and
// SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) as PostgreSQL speaks it, without any
// network code: the wire package drives a Server over pgproto3.
//
// A Verifier (StoredKey, ServerKey) is all the server stores of a secret.
// A Server checks one client proof against several candidate verifiers that
// share a salt and iteration count, in constant work per candidate, so a
// project's keys can all be tried for one login.
//
// SASLprep is not applied: tdb secrets are printable ASCII (tdb_…, sk_…), for
// which SASLprep is the identity. A non-ASCII password gives a verifier that
// PostgreSQL clients (which do apply SASLprep) may not match.
package scram
