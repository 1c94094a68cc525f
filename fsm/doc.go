// Package fsm is tdb's replicated state machine: every piece of metadata
// (projects, workspaces and their blueprint versions, tenants, keys, backends,
// physical databases, cluster settings) lives in a State that only changes by
// applying Commands committed through raft.
//
// A Command is an envelope (a type tag and a JSON payload) decoded in exactly one
// place; each type has one small applier registered in a table. Apply is pure and
// deterministic: the proposer supplies times, ids, salts and secrets inside the
// payload, so every replica computes the same State. Business failures ("tenant
// exists") are returned as the apply Response; a corrupt entry panics, because a
// replica that silently skips a command diverges.
//
// State knows nothing of raft; FSM wraps it with a lock, snapshot/restore and a
// change notification that readers (the wire proxy, the reconciler, HTTP
// handlers waiting for provisioning) use to wait for new state.
package fsm
