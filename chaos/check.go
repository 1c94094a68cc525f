package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/jackc/pgx/v5"
)

// Report is the outcome of a run, written to report.json.
type Report struct {
	Seed         uint64                    `json:"seed"`
	Out          string                    `json:"out"`
	Duration     string                    `json:"duration"`
	Ops          int                       `json:"ops"`
	Counts       map[string]map[string]int `json:"counts"` // kind → outcome → ops
	Faults       []Fault                   `json:"faults"`
	Converged    bool                      `json:"converged"`
	Nodes        []hashAnswer              `json:"nodes"`
	Lost         int                       `json:"lost"`
	LostDetail   []string                  `json:"lost_detail,omitempty"`
	Divergent    int                       `json:"divergent"`
	Linearizable bool                      `json:"linearizable"`
	LinCheck     string                    `json:"linearizability_check"` // porcupine's Ok | Illegal | Unknown
	ModelledOps  int                       `json:"modelled_ops"`
	// Illegal lists the registers whose own history is not linearizable,
	// with their modelled operations.
	Illegal map[string][]Op `json:"illegal,omitempty"`
	// StaleLogins are logins accepted with a key after its revocation was
	// acknowledged (invoked after the revoke returned).
	StaleLogins []Op `json:"stale_logins,omitempty"`
	// BansIdentical: every node holds the same auth-ban table.
	BansIdentical bool     `json:"bans_identical"`
	BannedIPs     []string `json:"banned_ips,omitempty"` // IPs some node refused with 53300
	// WrongPasswordAccepted counts attacker logins that were let in.
	WrongPasswordAccepted int `json:"wrong_password_accepted"`
	// Schema: the optional schema workload's outcome (--ops).
	Schema *SchemaReport `json:"schema,omitempty"`
	// Orphans are the backend's databases and roles of no tenant or
	// workspace once the reconciler has settled.
	Orphans    []string `json:"orphans,omitempty"`
	Violations []string `json:"violations"`

	history []Op
	model   porcupine.Model
	info    porcupine.LinearizationInfo
}

// hashAnswer is a node's /internal/hash answer.
type hashAnswer struct {
	ID           string `json:"id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
	BansHash     string `json:"bans_hash"`
	Bans         int    `json:"bans"`
	Error        string `json:"error,omitempty"`
}

func (r *runner) check(ctx context.Context, end time.Duration) *Report {
	ops := r.hist.snapshot()
	rep := &Report{Seed: r.cfg.seed, Duration: r.cfg.duration.String(), Ops: len(ops), Counts: map[string]map[string]int{}, history: ops}
	r.mu.Lock()
	rep.Faults = append([]Fault(nil), r.faults...)
	r.mu.Unlock()
	for _, op := range ops {
		if rep.Counts[op.Kind] == nil {
			rep.Counts[op.Kind] = map[string]int{}
		}
		rep.Counts[op.Kind][op.Outcome]++
	}

	rep.Converged = r.converge(ctx, 90*time.Second)
	if !rep.Converged {
		rep.Violations = append(rep.Violations, "the replicas did not converge to one applied index within 90 s of healing")
	}
	r.checkHashes(ctx, rep)
	r.checkMetadata(ctx, rep, ops)
	r.checkInserts(ctx, rep, ops)
	r.checkOrphans(ctx, rep)
	checkStaleLogins(rep, ops)
	if len(r.cfg.ops) > 0 {
		r.checkSchema(ctx, rep, ops)
	}
	for _, op := range ops {
		switch {
		case op.Kind == opAttack && op.Outcome == outAccepted:
			rep.WrongPasswordAccepted++
		case op.Kind == opAttack && op.Outcome == outBanned:
			if !slices.Contains(rep.BannedIPs, op.Subject) {
				rep.BannedIPs = append(rep.BannedIPs, op.Subject)
			}
		}
	}
	if rep.WrongPasswordAccepted > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d logins with a wrong password were accepted", rep.WrongPasswordAccepted))
	}

	res, info, model, n := linearizable(ops, end, 2*time.Minute)
	rep.LinCheck, rep.ModelledOps, rep.model, rep.info = string(res), n, model, info
	rep.Linearizable = res == porcupine.Ok
	if !rep.Linearizable {
		rep.Illegal = illegalSubjects(ops, end)
		rep.Violations = append(rep.Violations, fmt.Sprintf("the key/tenant history is not linearizable (porcupine: %s); see history.html", res))
	}
	if rep.Lost > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d acknowledged writes lost", rep.Lost))
	}
	if rep.Divergent > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d nodes' FSM differs from the others'", rep.Divergent))
	}
	if len(rep.StaleLogins) > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d logins accepted with a key after its revocation was acknowledged", len(rep.StaleLogins)))
	}
	if !rep.BansIdentical {
		rep.Violations = append(rep.Violations, "the nodes' auth-ban tables differ")
	}
	return rep
}

// converge waits until every node answers with the same applied index three
// polls in a row (the leader's reconciler may still be finishing work).
func (r *runner) converge(ctx context.Context, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	same := 0
	var last uint64
	for time.Now().Before(deadline) {
		idx, ok := uint64(0), true
		for i, mb := range r.c.members {
			st, err := r.c.status(ctx, mb)
			if err != nil || (i > 0 && st.AppliedIndex != idx) {
				ok = false
				break
			}
			idx = st.AppliedIndex
		}
		if ok && idx == last {
			same++
		} else {
			same = 0
		}
		last = idx
		if ok && same >= 3 {
			r.say("converged at raft index %d", idx)
			return true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

// checkHashes compares the nodes' FSM and ban-table digests.
func (r *runner) checkHashes(ctx context.Context, rep *Report) {
	for attempt := 0; attempt < 20; attempt++ {
		rep.Nodes = rep.Nodes[:0]
		sameIndex := true
		for _, mb := range r.c.members {
			var h hashAnswer
			code, raw, err := r.c.call(ctx, mb, "GET", "/internal/hash", r.c.secret, nil)
			if err != nil || code != 200 || json.Unmarshal(raw, &h) != nil {
				h = hashAnswer{ID: mb.name, Error: detail(code, raw, err)}
			}
			if len(rep.Nodes) > 0 && h.AppliedIndex != rep.Nodes[0].AppliedIndex {
				sameIndex = false
			}
			rep.Nodes = append(rep.Nodes, h)
		}
		if sameIndex {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	hashes, bans := map[string]int{}, map[string]int{}
	for _, h := range rep.Nodes {
		if h.Error == "" {
			hashes[h.Hash]++
			bans[h.BansHash]++
		}
	}
	best := ""
	for h, n := range hashes {
		if best == "" || n > hashes[best] {
			best = h
		}
	}
	for _, h := range rep.Nodes {
		if h.Error != "" || h.Hash != best {
			rep.Divergent++
		}
	}
	rep.BansIdentical = len(bans) == 1 && len(rep.Nodes) == len(r.c.members) && rep.Nodes[len(rep.Nodes)-1].Error == ""
	for _, h := range rep.Nodes {
		r.say("node %s: applied %d, fsm %.12s, bans %.12s (%d IPs) %s", h.ID, h.AppliedIndex, h.Hash, h.BansHash, h.Bans, h.Error)
	}
}

// checkMetadata looks for every acknowledged key and tenant write on every
// node through its HTTP API.
func (r *runner) checkMetadata(ctx context.Context, rep *Report, ops []Op) {
	type nodeView struct {
		keys    map[string]string // id → status
		tenants map[string]string // name → status
	}
	views := map[string]nodeView{}
	for _, mb := range r.c.members {
		v := nodeView{keys: map[string]string{}, tenants: map[string]string{}}
		var keys []struct{ ID, Status string }
		code, raw, err := r.c.call(ctx, mb, "GET", "/v1/apikeys", r.proxyPW, nil)
		if err != nil || code != 200 || json.Unmarshal(raw, &keys) != nil {
			rep.LostDetail = append(rep.LostDetail, fmt.Sprintf("%s: list keys: %s", mb.name, detail(code, raw, err)))
			rep.Lost++
			continue
		}
		for _, k := range keys {
			v.keys[k.ID] = k.Status
		}
		var tenants []struct {
			TenantID string `json:"tenant_id"`
			Status   string `json:"status"`
		}
		code, raw, err = r.c.call(ctx, mb, "GET", "/v1/tenants", r.proxyPW, nil)
		if err != nil || code != 200 || json.Unmarshal(raw, &tenants) != nil {
			rep.LostDetail = append(rep.LostDetail, fmt.Sprintf("%s: list tenants: %s", mb.name, detail(code, raw, err)))
			rep.Lost++
			continue
		}
		for _, t := range tenants {
			v.tenants[t.TenantID] = t.Status
		}
		views[mb.name] = v
	}
	lost := func(format string, args ...any) {
		rep.Lost++
		rep.LostDetail = append(rep.LostDetail, fmt.Sprintf(format, args...))
	}
	for _, op := range ops {
		if op.Outcome != outOK || op.KeyID == "" {
			continue
		}
		for node, v := range views {
			st, ok := v.keys[op.KeyID]
			switch {
			case op.Kind == opKeyCreate && !ok:
				lost("key %s (%s) created at %s through %s is missing on %s", op.Subject, op.KeyID, op.Return, op.Node, node)
			case op.Kind == opKeyRevoke && st != "revoked":
				lost("key %s (%s) revoked at %s through %s is %q on %s", op.Subject, op.KeyID, op.Return, op.Node, st, node)
			}
		}
	}
	// Tenants: the last write on each name, when it was acknowledged and no
	// write of unknown outcome on that name may land after it.
	last := map[string]Op{}
	unknown := map[string]bool{}
	for _, op := range ops {
		if op.Kind != opTenantCreate && op.Kind != opTenantDelete {
			continue
		}
		if op.Outcome == outUnknown {
			unknown[op.Subject] = true
		}
		if op.Outcome == outOK && op.Call >= last[op.Subject].Call {
			last[op.Subject] = op
		}
	}
	for _, st := range r.stable {
		last[st.name] = Op{Kind: opTenantCreate, Subject: st.name, Outcome: outOK, Node: "setup"}
	}
	for name, op := range last {
		if unknown[name] {
			continue
		}
		for node, v := range views {
			st, ok := v.tenants[name]
			switch {
			case op.Kind == opTenantCreate && (!ok || st == "deleting"):
				lost("tenant %s created at %s through %s is %q on %s", name, op.Return, op.Node, st, node)
			case op.Kind == opTenantDelete && ok && st != "deleting":
				lost("tenant %s deleted at %s through %s is %q on %s", name, op.Return, op.Node, st, node)
			}
		}
	}
}

// checkInserts finds every acknowledged row in the backend PostgreSQL,
// reading the stable tenants' physical databases directly.
func (r *runner) checkInserts(ctx context.Context, rep *Report, ops []Op) {
	acked := map[string]map[string]bool{} // tenant → row ids
	for _, op := range ops {
		if op.Kind != opInsert || op.Outcome != outOK {
			continue
		}
		tenant, row, _ := strings.Cut(op.Subject, "/")
		if acked[tenant] == nil {
			acked[tenant] = map[string]bool{}
		}
		acked[tenant][row] = true
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, r.c.pgURL)
	if err != nil {
		rep.Lost++
		rep.LostDetail = append(rep.LostDetail, "connect to the backend: "+err.Error())
		return
	}
	defer admin.Close(cctx)
	for _, st := range r.stable {
		physical := st.physical
		cfg, err := pgx.ParseConfig(r.c.pgURL)
		if err != nil {
			continue
		}
		cfg.Database = physical
		conn, err := pgx.ConnectConfig(cctx, cfg)
		if err != nil {
			rep.Lost += len(acked[st.name])
			rep.LostDetail = append(rep.LostDetail, fmt.Sprintf("tenant %s: connect to %s: %v", st.name, physical, err))
			continue
		}
		have := map[string]bool{}
		rows, err := conn.Query(cctx, "SELECT id FROM items")
		if err == nil {
			for rows.Next() {
				var id string
				if rows.Scan(&id) == nil {
					have[id] = true
				}
			}
			rows.Close()
			err = rows.Err()
		}
		conn.Close(cctx)
		if err != nil {
			rep.Lost += len(acked[st.name])
			rep.LostDetail = append(rep.LostDetail, fmt.Sprintf("tenant %s: read items: %v", st.name, err))
			continue
		}
		var missing []string
		for id := range acked[st.name] {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		sort.Strings(missing)
		rep.Lost += len(missing)
		for _, id := range missing {
			rep.LostDetail = append(rep.LostDetail, fmt.Sprintf("row %s acknowledged in tenant %s is missing from %s", id, st.name, physical))
		}
		r.say("tenant %s: %d acknowledged rows, %d in PostgreSQL, %d missing", st.name, len(acked[st.name]), len(have), len(missing))
	}
}

// checkStaleLogins finds logins accepted with a key after its revocation
// had been acknowledged.
func checkStaleLogins(rep *Report, ops []Op) {
	revokedAt := map[string]time.Duration{}
	for _, op := range ops {
		if op.Kind == opKeyRevoke && op.Outcome == outOK {
			if t, ok := revokedAt[op.Subject]; !ok || op.Return < t {
				revokedAt[op.Subject] = op.Return
			}
		}
	}
	for _, op := range ops {
		if op.Kind != opKeyLogin || op.Outcome != outAccepted {
			continue
		}
		if t, ok := revokedAt[op.Subject]; ok && op.Call > t {
			rep.StaleLogins = append(rep.StaleLogins, op)
		}
	}
}

// write saves report.json, history.json and history.html under dir.
func (rep *Report) write(dir string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), data, 0o644); err != nil {
		return err
	}
	data, err = json.MarshalIndent(rep.history, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "history.json"), data, 0o644); err != nil {
		return err
	}
	return porcupine.VisualizePath(rep.model, rep.info, filepath.Join(dir, "history.html"))
}

// summary is the run's last line.
func (rep *Report) summary() string {
	lin := "yes"
	if !rep.Linearizable {
		lin = "no"
	}
	return fmt.Sprintf("chaos: %d ops, %d lost, %d divergent, linearizable: %s", rep.Ops, rep.Lost, rep.Divergent, lin)
}
