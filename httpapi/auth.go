package httpapi

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"tdb/fsm"
)

// ProjectHeader names the project the operator's admin key acts in on project
// routes.
const ProjectHeader = "X-Tdb-Project"

// caller is who made a request, copied out of the state at authentication.
type caller struct {
	operator    bool   // the cluster operator's admin key
	projectID   string // the project acted in; empty for the operator without ProjectHeader
	keyID       string // empty for the operator
	role        string
	scopeType   string
	scopeValues []string
}

// authenticate turns the bearer secret into a caller. The operator's key is
// compared in constant time; any other secret is looked up by its hash.
func (s *server) authenticate(r *http.Request) (*caller, error) {
	secret, ok := bearer(r)
	if !ok {
		return nil, errf(http.StatusUnauthorized, codeUnauthorized, "missing API key: send Authorization: Bearer <key>")
	}
	if admin := s.c.AdminKey(); admin != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(admin)) == 1 {
		c := &caller{operator: true, role: fsm.RoleAdmin, scopeType: fsm.ScopeProject}
		if pid := r.Header.Get(ProjectHeader); pid != "" {
			var found bool
			s.view(func(st *fsm.State) { found = st.Project(pid) != nil })
			if !found {
				return nil, notFound("project %q not found", pid)
			}
			c.projectID = pid
		}
		return c, nil
	}
	var c *caller
	var revoked bool
	lookup := lookupOf(secret)
	s.view(func(st *fsm.State) {
		k := st.KeyByLookup(lookup)
		if k == nil {
			return
		}
		if !k.Live() {
			revoked = true
			return
		}
		c = &caller{
			projectID: k.ProjectID, keyID: k.ID, role: k.Role,
			scopeType: k.ScopeType, scopeValues: slices.Clone(k.ScopeValues),
		}
	})
	switch {
	case revoked:
		return nil, errf(http.StatusUnauthorized, codeUnauthorized, "API key has been revoked")
	case c == nil:
		return nil, errf(http.StatusUnauthorized, codeUnauthorized, "invalid API key")
	}
	if pid := r.Header.Get(ProjectHeader); pid != "" && pid != c.projectID {
		return nil, scopeDenied("credential belongs to project %s, not %q", c.projectID, pid)
	}
	return c, nil
}

func bearer(r *http.Request) (string, bool) {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	secret = strings.TrimSpace(secret)
	return secret, secret != ""
}

// requireOperator admits only the cluster operator's admin key.
func (c *caller) requireOperator(action string) error {
	if !c.operator {
		return permissionDenied("only the cluster operator's admin key can %s", action)
	}
	return nil
}

// requireProject admits callers acting in a project.
func (c *caller) requireProject() error {
	if c.projectID == "" {
		return badRequest("the operator's admin key must name a project with the %s header on this route", ProjectHeader)
	}
	return nil
}

// requireAdmin admits keys with role admin: every mutation needs one.
func (c *caller) requireAdmin(action string) error {
	if c.role != fsm.RoleAdmin {
		return permissionDenied("a %s key cannot %s: mutations need a key with role admin", c.role, action)
	}
	return nil
}

var roleRank = map[string]int{fsm.RoleRead: 1, fsm.RoleWrite: 2, fsm.RoleAdmin: 3}

// reachesWorkspace reports whether the caller's scope covers a workspace (and
// so its blueprint versions and settings).
func (c *caller) reachesWorkspace(name string) bool {
	switch c.scopeType {
	case fsm.ScopeProject:
		return true
	case fsm.ScopeWorkspace:
		return slices.Contains(c.scopeValues, name)
	}
	return false
}

// reachesTenant reports whether the caller's scope covers a tenant of a blueprint.
func (c *caller) reachesTenant(name, blueprint string) bool {
	switch c.scopeType {
	case fsm.ScopeProject:
		return true
	case fsm.ScopeWorkspace:
		return slices.Contains(c.scopeValues, blueprint)
	case fsm.ScopeTenant:
		return slices.Contains(c.scopeValues, name)
	}
	return false
}

// covers reports whether a key scope (of an existing or a proposed key) lies
// within the caller's reach: the caller could do everything that key can.
func (c *caller) covers(p *fsm.Project, scopeType string, values []string) bool {
	if c.scopeType == fsm.ScopeProject {
		return true
	}
	if len(values) == 0 {
		return false
	}
	for _, v := range values {
		switch scopeType {
		case fsm.ScopeWorkspace:
			if !c.reachesWorkspace(v) {
				return false
			}
		case fsm.ScopeTenant:
			t := p.Tenants[v]
			if t == nil || !c.reachesTenant(t.Name, t.Blueprint) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// workspaceDenied is the refusal for a workspace outside the caller's scope,
// worded like the wire proxy's.
func (c *caller) workspaceDenied(name string) error {
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("credential scoped to tenants %s, attempted workspace %q", list(c.scopeValues), name)
	}
	return scopeDenied("credential scoped to workspaces %s, attempted workspace %q", list(c.scopeValues), name)
}

// tenantDenied is the refusal for a tenant outside the caller's scope.
func (c *caller) tenantDenied(name, blueprint string) error {
	if c.scopeType == fsm.ScopeWorkspace {
		return scopeDenied("credential scoped to workspaces %s, attempted workspace %q", list(c.scopeValues), blueprint)
	}
	return scopeDenied("credential scoped to tenants %s, attempted tenant %q", list(c.scopeValues), name)
}

// list writes scope values as the wire proxy's refusals do.
func list(values []string) string { return "[" + strings.Join(values, ", ") + "]" }
