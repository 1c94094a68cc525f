package fsm

import (
	"slices"
	"time"
)

// CreateKey adds an API key to a project.
type CreateKey struct {
	ProjectID string    `json:"project_id"`
	Key       NewKey    `json:"key"`
	At        time.Time `json:"at"`
}

// RevokeKey makes a key unusable from now on; it stays listed as revoked.
type RevokeKey struct {
	ProjectID string    `json:"project_id"`
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
}

func init() {
	register(CmdCreateKey, applyCreateKey)
	register(CmdRevokeKey, applyRevokeKey)
}

func applyCreateKey(s *State, _ uint64, c *CreateKey) (any, error) {
	p, err := s.existingProject(c.ProjectID)
	if err != nil {
		return nil, err
	}
	return nil, s.addKey(p, c.Key, c.At)
}

func applyRevokeKey(s *State, _ uint64, c *RevokeKey) (any, error) {
	p, err := s.existingProject(c.ProjectID)
	if err != nil {
		return nil, err
	}
	k := p.Keys[c.ID]
	if k == nil {
		return nil, errorf(CodeNotFound, "key %s not found", c.ID)
	}
	if k.RevokedAt == nil {
		at := c.At
		k.RevokedAt = &at
	}
	return nil, nil
}

// addKey validates a new key against the project and stores it.
func (s *State) addKey(p *Project, nk NewKey, at time.Time) error {
	switch nk.Role {
	case RoleAdmin, RoleWrite, RoleRead:
	default:
		return errorf(CodeBadRequest, "invalid role %q: must be admin, write or read", nk.Role)
	}
	switch nk.ScopeType {
	case ScopeProject:
		if len(nk.ScopeValues) > 0 {
			return errorf(CodeBadRequest, "a project-scoped key takes no scope values")
		}
	case ScopeWorkspace:
		if len(nk.ScopeValues) == 0 {
			return errorf(CodeBadRequest, "a workspace-scoped key needs scope values (workspace names)")
		}
		for _, v := range nk.ScopeValues {
			if p.Workspaces[v] == nil {
				return errorf(CodeNotFound, "workspace %q not found", v)
			}
		}
	case ScopeTenant:
		if len(nk.ScopeValues) == 0 {
			return errorf(CodeBadRequest, "a tenant-scoped key needs scope values (tenant names)")
		}
		for _, v := range nk.ScopeValues {
			t := p.Tenants[v]
			if t == nil {
				return errorf(CodeNotFound, "tenant %q not found", v)
			}
			if s.Deleting(t) && s.ActiveLogVersion() >= 4 {
				// Its name is taken from the keys that had it when it was
				// deleted; a key made now would keep it, and reach the
				// next tenant that takes the name.
				return errorf(CodeConflict, "tenant %q is being deleted", v)
			}
		}
	default:
		return errorf(CodeBadRequest, "invalid scope type %q: must be project, workspace or tenant", nk.ScopeType)
	}
	if nk.ID == "" || nk.Lookup == "" || len(nk.StoredKey) == 0 || len(nk.ServerKey) == 0 {
		return errorf(CodeBadRequest, "key %q is incomplete", nk.ID)
	}
	if p.Keys[nk.ID] != nil || s.byLookup[nk.Lookup] != nil {
		return errorf(CodeConflict, "key %s already exists", nk.ID)
	}
	k := &Key{
		ID: nk.ID, ProjectID: p.ID, Name: nk.Name, Role: nk.Role, ScopeType: nk.ScopeType,
		ScopeValues: slices.Clone(nk.ScopeValues), StoredKey: nk.StoredKey, ServerKey: nk.ServerKey,
		Lookup: nk.Lookup, CreatedAt: at,
	}
	p.Keys[k.ID] = k
	s.byLookup[k.Lookup] = k
	return nil
}
