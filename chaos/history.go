package main

import (
	"sort"
	"sync"
	"time"
)

// Kinds of recorded operation.
const (
	opKeyCreate    = "key_create"    // POST /v1/apikeys
	opKeyRevoke    = "key_revoke"    // DELETE /v1/apikeys/{id}
	opKeyLogin     = "key_login"     // a wire login with a key: the key register's read
	opTenantCreate = "tenant_create" // POST /v1/tenants
	opTenantDelete = "tenant_delete" // DELETE /v1/tenants/{name}
	opTenantGet    = "tenant_get"    // GET /v1/tenants/{name}
	opInsert       = "insert"        // INSERT of a row with a unique id through the wire proxy
	opAttack       = "attack_login"  // a login with a wrong password, to trigger a ban
)

// Outcomes. A write is acknowledged (ok), refused without effect (fail:
// a 4xx answer), or of unknown outcome (unknown: a timeout, a dropped
// connection, a 5xx). A login is accepted, rejected (28P01), or unknown
// (any other refusal, e.g. 57P03 while a node fails closed, or no answer).
const (
	outOK       = "ok"
	outFail     = "fail"
	outUnknown  = "unknown"
	outAccepted = "accepted"
	outRejected = "rejected"
	outBanned   = "banned" // 53300: the IP is banned
)

// Op is one recorded operation with its invocation and completion times
// (since the start of the run, monotonic clock).
type Op struct {
	ID      int           `json:"id"`
	Client  int           `json:"client"`
	Kind    string        `json:"kind"`
	Node    string        `json:"node"`
	Subject string        `json:"subject"` // key name, tenant name, row id, or IP
	KeyID   string        `json:"key_id,omitempty"`
	Call    time.Duration `json:"call_ns"`
	Return  time.Duration `json:"return_ns"`
	Outcome string        `json:"outcome"`
	Detail  string        `json:"detail,omitempty"`
}

// history is the run's operations, appended concurrently.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

func newHistory(start time.Time) *history { return &history{start: start} }

func (h *history) now() time.Duration { return time.Since(h.start) }

// record appends a completed operation and returns it.
func (h *history) record(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	h.ops = append(h.ops, op)
	return op
}

// snapshot returns the operations sorted by invocation.
func (h *history) snapshot() []Op {
	h.mu.Lock()
	out := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}
