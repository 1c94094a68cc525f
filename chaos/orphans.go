package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
)

// checkOrphans finds the databases and roles of the backend that belong to
// no tenant or workspace of the metadata, once the leader's reconciler has
// settled (no tenant provisioning or deleting): what a drop or provisioning
// left behind when its leader was deposed mid-way, with nothing left to ever
// drop it. Failures to look are violations; what it finds is reported.
func (r *runner) checkOrphans(ctx context.Context, rep *Report) {
	orphan := func(format string, args ...any) {
		rep.Orphans = append(rep.Orphans, fmt.Sprintf(format, args...))
	}
	violation := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	// Orphans are reported, not counted as violations: a leader frozen
	// (SIGSTOP) in the middle of a provisioning ran its next backend
	// statement as it resumed, before it learned it was deposed, and if the
	// next leader had deleted that tenant meanwhile the statement left a
	// role or database behind. The backends' leader fence (backend.Fence)
	// now refuses or terminates that statement; orphans stay reported
	// until long runs have shown none.
	type tenant struct {
		TenantID         string `json:"tenant_id"`
		Status           string `json:"status"`
		PhysicalDatabase string `json:"physical_database"`
	}
	var tenants []tenant
	settled := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		tenants = nil
		code, raw, err := r.c.call(ctx, r.c.members[0], "GET", "/v1/tenants", r.proxyPW, nil)
		if err != nil || code != 200 || json.Unmarshal(raw, &tenants) != nil {
			continue
		}
		settled = true
		for _, t := range tenants {
			if t.Status == "deleting" || t.Status == "provisioning" {
				settled = false
			}
		}
		if settled {
			break
		}
	}
	if tenants == nil {
		violation("list tenants: no answer within 60 s")
		return
	}
	var workspaces []struct {
		Name             string `json:"name"`
		PhysicalDatabase string `json:"physical_database"`
	}
	code, raw, err := r.c.call(ctx, r.c.members[0], "GET", "/v1/workspaces", r.proxyPW, nil)
	if err != nil || code != 200 || json.Unmarshal(raw, &workspaces) != nil {
		violation("list workspaces: %s", detail(code, raw, err))
		return
	}
	known := map[string]bool{}
	for _, t := range tenants {
		known[t.PhysicalDatabase] = true
	}
	for _, w := range workspaces {
		known[w.PhysicalDatabase] = true
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, r.c.pgURL)
	if err != nil {
		violation("connect to the backend: %v", err)
		return
	}
	defer admin.Close(cctx)
	names := func(sql string) []string {
		rows, err := admin.Query(cctx, sql, fsm.PhysicalPrefix+"%")
		if err != nil {
			violation("%s: %v", sql, err)
			return nil
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			violation("%s: %v", sql, err)
		}
		return out
	}
	dbs := names(`SELECT datname FROM pg_database WHERE datname LIKE $1`)
	roles := names(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1`)
	sort.Strings(dbs)
	sort.Strings(roles)
	for _, db := range dbs {
		if !known[db] {
			orphan("database %s is on the backend and belongs to no tenant or workspace", db)
		}
	}
	for _, role := range roles {
		db := role
		for _, suffix := range []string{backend.RoleOwner, backend.RoleAdmin, backend.RoleWrite, backend.RoleRead} {
			if d, ok := strings.CutSuffix(role, "_"+suffix); ok {
				db = d
				break
			}
		}
		if !known[db] {
			orphan("role %s is on the backend and belongs to no tenant or workspace", role)
		}
	}
	state := "settled"
	if !settled {
		state = "not settled within 60 s"
	}
	r.say("backend: %d databases and %d roles named %s…, %d tenants (%s); %d of no tenant or workspace", len(dbs), len(roles), fsm.PhysicalPrefix, len(tenants), state, len(rep.Orphans))
	for _, o := range rep.Orphans {
		r.say("orphan (reported, not a violation): %s", o)
	}
}
