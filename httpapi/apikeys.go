package httpapi

import (
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"tdb/fsm"
)

// Key is an API key as the API shows it (the secret only when it is created).
type Key struct {
	ID          string     `json:"id"`
	Key         string     `json:"key,omitempty"` // the secret: only in the create response
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	ScopeType   string     `json:"scope_type"`
	ScopeValues []string   `json:"scope_values"`
	Status      string     `json:"status"` // active | revoked
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	RaftIndex   uint64     `json:"raft_index,omitempty"`
}

func keyView(k *fsm.Key) Key {
	out := Key{
		ID: k.ID, Name: k.Name, Role: k.Role, ScopeType: k.ScopeType, ScopeValues: orEmpty(k.ScopeValues),
		Status: "active", CreatedAt: k.CreatedAt,
	}
	if k.RevokedAt != nil {
		at := *k.RevokedAt
		out.Status, out.RevokedAt = "revoked", &at
	}
	return out
}

// createKey: POST /v1/apikeys {name, role, scope_type, scope_values}. The caller
// needs role admin, and the new key must lie within the caller's own scope with
// a role not above its own.
func (s *server) createKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("create API keys"); err != nil {
		return err
	}
	var req struct {
		Name        string   `json:"name"`
		Role        string   `json:"role"`
		ScopeType   string   `json:"scope_type"`
		ScopeValues []string `json:"scope_values"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if utf8.RuneCountInString(req.Name) > maxLabel {
		return badRequest("key name is longer than %d characters", maxLabel)
	}
	if err := checkLabel("key name", req.Name); err != nil {
		return err
	}
	if req.Role == "" {
		// As the product documentation creates keys: without a role,
		// the key gets the caller's own, which is admin (only admins
		// create keys).
		req.Role = c.role
	}
	if roleRank[req.Role] == 0 {
		return badRequest("invalid role %q: must be admin, write or read", req.Role)
	}
	if roleRank[req.Role] > roleRank[c.role] {
		return permissionDenied("a %s key cannot create a key with role %s", c.role, req.Role)
	}
	switch req.ScopeType {
	case fsm.ScopeProject:
		if len(req.ScopeValues) > 0 {
			return badRequest("a project-scoped key takes no scope values")
		}
	case fsm.ScopeWorkspace, fsm.ScopeTenant:
		if len(req.ScopeValues) == 0 {
			return badRequest("a %s-scoped key needs scope values (%s names)", req.ScopeType, req.ScopeType)
		}
		for _, v := range req.ScopeValues {
			if err := fsm.ValidExistingName(req.ScopeType, v); err != nil {
				return err
			}
		}
		req.ScopeValues = dedupe(req.ScopeValues)
	default:
		return badRequest("invalid scope type %q: must be project, workspace or tenant", req.ScopeType)
	}
	var salt []byte
	var iterations int
	var err error
	s.view(func(st *fsm.State) {
		p := st.Project(c.projectID)
		for _, v := range req.ScopeValues {
			if req.ScopeType == fsm.ScopeWorkspace && p.Workspaces[v] == nil {
				err = notFound("workspace %q not found", v)
				return
			}
			if req.ScopeType == fsm.ScopeTenant && p.Tenants[v] == nil {
				err = notFound("tenant %q not found", v)
				return
			}
		}
		if !c.covers(p, req.ScopeType, req.ScopeValues) {
			err = scopeDenied("a %s cannot create a %s: it would reach beyond its own scope",
				scopeDesc(c.scopeType, c.scopeValues), scopeDesc(req.ScopeType, req.ScopeValues))
			return
		}
		for _, v := range req.ScopeValues {
			// A tenant being deleted gives its name to the next tenant that
			// takes it, and a key would keep the name (the state refuses
			// such a key too, from log version 4).
			if req.ScopeType == fsm.ScopeTenant && st.Deleting(p.Tenants[v]) {
				err = errf(http.StatusConflict, codeConflict, "tenant %q is being deleted", v)
				return
			}
		}
		salt, iterations = append([]byte(nil), p.Salt...), p.Iterations
	})
	if err != nil {
		return err
	}
	secret := newAPIKeySecret()
	nk := newKey(secret, req.Name, req.Role, req.ScopeType, req.ScopeValues, salt, iterations)
	index, err := s.apply(r.Context(), fsm.CmdCreateKey, fsm.CreateKey{ProjectID: c.projectID, Key: nk, At: s.now()})
	if err != nil {
		return err
	}
	var out Key
	s.view(func(st *fsm.State) { out = keyView(st.Project(c.projectID).Keys[nk.ID]) })
	out.Key, out.RaftIndex = secret, index
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// listKeys: GET /v1/apikeys, the keys within the caller's reach (live and
// revoked), without secrets.
func (s *server) listKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	out := []Key{}
	s.view(func(st *fsm.State) {
		p := st.Project(c.projectID)
		for _, k := range p.Keys {
			if k.ID == c.keyID || c.covers(p, k.ScopeType, k.ScopeValues) {
				out = append(out, keyView(k))
			}
		}
	})
	sortBy(out, func(k Key) string { return k.ID })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeKey: DELETE /v1/apikeys/{id}. A key within the caller's reach, or the
// caller's own key.
func (s *server) revokeKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("revoke API keys"); err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	var err error
	var out Key
	s.view(func(st *fsm.State) {
		p := st.Project(c.projectID)
		k := p.Keys[id]
		switch {
		case k == nil:
			err = notFound("key %q not found", id)
		case k.ID != c.keyID && !c.covers(p, k.ScopeType, k.ScopeValues):
			err = scopeDenied("key %s reaches beyond this credential's scope", id)
		default:
			out = keyView(k)
		}
	})
	if err != nil {
		return err
	}
	at := s.now()
	index, err := s.apply(r.Context(), fsm.CmdRevokeKey, fsm.RevokeKey{ProjectID: c.projectID, ID: id, At: at})
	if err != nil {
		return err
	}
	s.view(func(st *fsm.State) {
		if k := st.Project(c.projectID).Keys[id]; k != nil {
			out = keyView(k)
		} else if out.RevokedAt == nil {
			// Revoked long enough ago to be removed (--revoked-key-retention)
			// by the time it is read.
			out.Status, out.RevokedAt = "revoked", &at
		}
	})
	out.RaftIndex = index
	writeJSON(w, http.StatusOK, out)
	return nil
}

// scopeDesc names a key's scope for messages: "project-scoped key", or
// "tenant-scoped key [wayne]".
func scopeDesc(scopeType string, values []string) string {
	if len(values) == 0 {
		return scopeType + "-scoped key"
	}
	return scopeType + "-scoped key " + list(values)
}

// dedupe drops repeated values, keeping the first of each.
func dedupe(values []string) []string {
	seen := make(map[string]bool, len(values))
	out := values[:0:0]
	for _, v := range values {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
