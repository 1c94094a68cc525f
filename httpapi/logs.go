package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"tdb/fsm"
	"tdb/querylog"
)

// QueryLogSource is implemented by a Cluster whose node keeps a query log.
type QueryLogSource interface {
	QueryLog() *querylog.Log
}

// Query log request limits.
const (
	defaultLogLimit = 1000
	maxLogLimit     = querylog.DefaultCapacity
)

// Logs is the body of GET /v1/logs.
type Logs struct {
	Entries []querylog.Entry `json:"entries"`
}

// listLogs: GET /v1/logs?tenant=&since=&limit= — this node's query log, the
// newest `limit` entries (oldest first) within the caller's scope: the
// operator sees every project (or the one named by the project header), a
// project key its project, a workspace key its workspaces and their tenants,
// a tenant key its tenants (the ones its names stand for now). since is a duration back from now (1h) or an
// RFC 3339 time.
func (s *server) listLogs(w http.ResponseWriter, r *http.Request, c *caller) error {
	src, ok := s.c.(QueryLogSource)
	if !ok || src.QueryLog() == nil {
		return errf(http.StatusServiceUnavailable, codeUnavailable, "this node keeps no query log")
	}
	q := r.URL.Query()
	f := querylog.Filter{Limit: defaultLogLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLogLimit {
			return badRequest("limit must be a number from 1 to %d, got %q", maxLogLimit, v)
		}
		f.Limit = n
	}
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			f.Since = s.now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.Since = t
		} else {
			return badRequest("since must be a duration such as 1h or an RFC 3339 time, got %q", v)
		}
	}
	if !c.operator || c.projectID != "" {
		if err := c.requireProject(); err != nil {
			return err
		}
		f.Project = c.projectID
		switch c.scopeType {
		case fsm.ScopeWorkspace:
			f.Workspaces = toSet(c.scopeValues)
		case fsm.ScopeTenant:
			// The tenants the key's names stand for now: a name a deleted
			// tenant had before shows nothing of that tenant's statements.
			f.Tenants = map[string]querylog.TenantScope{}
			s.view(func(st *fsm.State) {
				p := st.Project(f.Project)
				if p == nil {
					return
				}
				for _, name := range c.scopeValues {
					if t := p.Tenants[name]; t != nil {
						f.Tenants[name] = querylog.TenantScope{Blueprint: t.Blueprint, Since: t.CreatedAt}
					}
				}
			})
		}
	}
	if name := q.Get("tenant"); name != "" {
		if f.Project != "" {
			var t *fsm.Tenant
			s.view(func(st *fsm.State) {
				if p := st.Project(f.Project); p != nil && p.Tenants[name] != nil {
					tt := *p.Tenants[name]
					t = &tt
				}
			})
			if t != nil && !c.reachesTenant(t.Name, t.Blueprint) {
				return c.tenantDenied(t.Name, t.Blueprint)
			}
			if t == nil && c.scopeType != fsm.ScopeProject {
				return notFound("tenant %q not found", name)
			}
		}
		f.Tenant = name
	}
	writeJSON(w, http.StatusOK, Logs{Entries: src.QueryLog().Query(f)})
	return nil
}

func toSet(values []string) map[string]bool {
	m := make(map[string]bool, len(values))
	for _, v := range values {
		m[v] = true
	}
	return m
}
