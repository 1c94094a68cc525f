// Package evloop relays PostgreSQL protocol messages between pairs of
// sockets (a client and its backend) from one epoll loop on one locked OS
// thread, the way PgBouncer does: a message costs one wake-up of that
// thread, not a goroutine wake-up per direction.
//
// A Loop owns no connection logic. A Handler sees each whole message read
// from either side and appends what to send to either side; the loop reads,
// frames, writes what the handler produced once per batch, and applies
// back-pressure (a side whose output is blocked stops the reading of the
// other). A handler that needs to block (or a message larger than the loop's
// buffer) ejects the pair: its callback gets the bytes not yet handled, and
// the caller goes on from there with blocking I/O.
//
// Connections are wrapped with NewSocket when they are made; Relay takes a
// pair's sockets (and a client's TLS connection over its socket) from the Go
// runtime's poller, and gives them back, with what was written inside the
// loop sent, before the pair's callback runs. Park does the same for a
// client alone until it speaks. The loop is Linux only; Supported reports
// whether it can run.
package evloop
