package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability model. Each key and each tenant is a register of its
// own (porcupine checks each partition alone, which is sound: linearizability
// is compositional).
//
//	key:    absent → live (create) → revoked (revoke; idempotent)
//	tenant: absent → present (create) → deleting (delete; idempotent)
//	        → absent (the leader's reconciler drops the database; this step
//	        is internal, so the model lets it happen at any time)
//
// The reads are the operations the product promises to be linearizable:
// a wire login with a key is accepted only while the key is live (a key
// whose creation was acknowledged logs in on any node — catch-up on a miss —
// and one whose revocation was acknowledged nowhere), and a rejection
// (28P01) means absent or revoked. Logins refused for other reasons (57P03
// while a node fails closed, a ban, no answer) carry no information and are
// left out, as are writes refused with a 4xx (no effect; their refusal may
// come from a handler's pre-check on a follower's local state, which the
// API does not promise to be current). HTTP GETs read the local replica,
// which the API does not promise to be linearizable either, so they are
// recorded but not checked here. A write of unknown outcome may take effect
// at any time up to the end of the history, or never.

// Register states.
const (
	stAbsent   = 0
	stLive     = 1 // a key that may authenticate; a tenant that exists
	stRevoked  = 2 // a revoked key; a tenant being deleted
	stPresent  = stLive
	stDeleting = stRevoked
)

var stateNames = map[string][]string{
	"key":    {"absent", "live", "revoked"},
	"tenant": {"absent", "present", "deleting"},
}

// mInput is an operation as the model sees it.
type mInput struct {
	Domain  string // key | tenant
	Subject string
	Kind    string
	Outcome string
}

// linearizable reports whether the modelled operations of ops form a
// linearizable history, with porcupine's verbose info for visualisation.
func linearizable(ops []Op, end time.Duration, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo, porcupine.Model, int) {
	var hist []porcupine.Operation
	for _, op := range ops {
		in, ok := modelled(op)
		if !ok {
			continue
		}
		ret := int64(op.Return)
		if op.Outcome == outUnknown {
			ret = int64(end) + 1 // may take effect until the end
		}
		hist = append(hist, porcupine.Operation{
			ClientId: op.Client, Input: in, Call: int64(op.Call), Output: op.Outcome, Return: ret,
			Metadata: fmt.Sprintf("op %d on %s %s", op.ID, op.Node, op.Detail),
		})
	}
	model := registerModel()
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	return res, info, model, len(hist)
}

// modelled maps a recorded operation to a model input, or false when the
// model leaves it out.
func modelled(op Op) (mInput, bool) {
	switch op.Kind {
	case opKeyCreate, opKeyRevoke:
		if op.Outcome == outOK || op.Outcome == outUnknown {
			return mInput{"key", op.Subject, op.Kind, op.Outcome}, true
		}
	case opKeyLogin:
		if op.Outcome == outAccepted || op.Outcome == outRejected {
			return mInput{"key", op.Subject, op.Kind, op.Outcome}, true
		}
	case opTenantCreate, opTenantDelete:
		if op.Outcome == outOK || op.Outcome == outUnknown {
			return mInput{"tenant", op.Subject, op.Kind, op.Outcome}, true
		}
	}
	return mInput{}, false
}

func registerModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range history {
				in := op.Input.(mInput)
				k := in.Domain + ":" + in.Subject
				if _, ok := by[k]; !ok {
					order = append(order, k)
				}
				by[k] = append(by[k], op)
			}
			sort.Strings(order)
			out := make([][]porcupine.Operation, 0, len(order))
			for _, k := range order {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() []any { return []any{stAbsent} },
		Step: func(state, input, output any) []any {
			return step(state.(int), input.(mInput))
		},
		Equal: func(a, b any) bool { return a.(int) == b.(int) },
		Hash:  func(s any) uint64 { return uint64(s.(int)) },
		DescribeOperation: func(input, output any) string {
			in := input.(mInput)
			return fmt.Sprintf("%s(%s) → %s", in.Kind, in.Subject, output)
		},
		DescribeState: func(state any) string { return fmt.Sprint(state) },
	}
	m := nm.ToModel()
	m.DescribeState = func(state any) string {
		var names []string
		for _, s := range state.([]any) {
			names = append(names, stateNames["key"][s.(int)]+"/"+stateNames["tenant"][s.(int)])
		}
		return fmt.Sprint(names)
	}
	return m
}

// step returns every state the register may be in after in, from s; none
// when in cannot happen in s.
func step(s int, in mInput) []any {
	var out []any
	add := func(states ...int) {
		for _, n := range states {
			dup := false
			for _, o := range out {
				dup = dup || o.(int) == n
			}
			if !dup {
				out = append(out, n)
			}
		}
	}
	pre := []int{s}
	if in.Domain == "tenant" && s == stDeleting {
		pre = append(pre, stAbsent) // the database may have been dropped meanwhile
	}
	for _, p := range pre {
		switch in.Kind {
		case opKeyCreate, opTenantCreate:
			switch {
			case in.Outcome == outOK && p == stAbsent:
				add(stLive)
			case in.Outcome == outUnknown && p == stAbsent:
				add(stAbsent, stLive)
			case in.Outcome == outUnknown:
				add(p)
			}
		case opKeyRevoke, opTenantDelete:
			switch {
			case in.Outcome == outOK && p != stAbsent:
				add(stRevoked)
			case in.Outcome == outUnknown && p != stAbsent:
				add(p, stRevoked)
			case in.Outcome == outUnknown:
				add(p)
			}
		case opKeyLogin:
			switch {
			case in.Outcome == outAccepted && p == stLive:
				add(p)
			case in.Outcome == outRejected && p != stLive:
				add(p)
			}
		}
	}
	return out
}

// illegalSubjects checks each register alone and returns the ones whose
// history is not linearizable, with their modelled operations, for the
// report.
func illegalSubjects(ops []Op, end time.Duration) map[string][]Op {
	by := map[string][]Op{}
	for _, op := range ops {
		if in, ok := modelled(op); ok {
			by[in.Domain+":"+in.Subject] = append(by[in.Domain+":"+in.Subject], op)
		}
	}
	out := map[string][]Op{}
	for k, part := range by {
		if res, _, _, _ := linearizable(part, end, 30*time.Second); res != porcupine.Ok {
			out[k] = part
		}
	}
	return out
}
