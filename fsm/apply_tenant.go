package fsm

import (
	"slices"
	"time"
)

// CreateTenant creates a tenant of a blueprint, its physical database (to be
// provisioned) and its tenant-scoped admin key.
type CreateTenant struct {
	ProjectID string      `json:"project_id"`
	Name      string      `json:"name"`
	Blueprint string      `json:"blueprint"`
	At        time.Time   `json:"at"`
	Database  NewDatabase `json:"database"`
	Key       NewKey      `json:"key"`
}

// DeleteTenant marks a tenant for deletion; the reconciler drops its database
// and then removes it. Keys scoped to it lose it at once.
type DeleteTenant struct {
	ProjectID string    `json:"project_id"`
	Name      string    `json:"name"`
	At        time.Time `json:"at"`
}

// SetDatabaseStatus records what the reconciler achieved on a backend.
type SetDatabaseStatus struct {
	Name          string `json:"name"`
	Status        string `json:"status"`
	Error         string `json:"error,omitempty"`
	SchemaVersion *int   `json:"schema_version,omitempty"`
}

// SetDatabaseGuard records that the reconciler installed version Version
// of the DDL guard (the event trigger that refuses DDL the proxy cannot
// see) in a database. A lower version than the one recorded changes
// nothing: a leader of an older build does not undo a newer one's work.
type SetDatabaseGuard struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// RemoveDatabase forgets a dropped physical database and the tenant it held.
type RemoveDatabase struct {
	Name string    `json:"name"`
	At   time.Time `json:"at,omitzero"` // when keys left with no tenant are revoked (log version 4)
}

func init() {
	register(CmdCreateTenant, applyCreateTenant)
	register(CmdDeleteTenant, applyDeleteTenant)
	register(CmdSetDatabaseStatus, applySetDatabaseStatus)
	register(CmdRemoveDatabase, applyRemoveDatabase)
	register(CmdSetDatabaseGuard, applySetDatabaseGuard)
}

func applyCreateTenant(s *State, _ uint64, c *CreateTenant) (any, error) {
	p, err := s.existingProject(c.ProjectID)
	if err != nil {
		return nil, err
	}
	if err := s.validateName("tenant", c.Name); err != nil {
		return nil, err
	}
	w := p.Workspaces[c.Blueprint]
	if w == nil {
		return nil, errorf(CodeNotFound, "blueprint %q not found", c.Blueprint)
	}
	if w.Mode != ModeTenant {
		return nil, errorf(CodeBadRequest, "workspace %q is in %s mode: tenants need a tenant-mode blueprint", c.Blueprint, w.Mode)
	}
	if w.DatabaseType != TypePostgreSQL {
		return nil, errorf(CodeBadRequest, "blueprint %q is %s: this cluster serves PostgreSQL tenants", c.Blueprint, w.DatabaseType)
	}
	if p.Tenants[c.Name] != nil {
		return nil, errorf(CodeConflict, "tenant %q already exists", c.Name)
	}
	if err := s.addDatabase(p, c.Database, TenantDatabase(c.Blueprint, c.Name), KindTenant, c.At); err != nil {
		return nil, err
	}
	t := &Tenant{Name: c.Name, Blueprint: c.Blueprint, Database: c.Database.Name, KeyID: c.Key.ID, CreatedAt: c.At}
	p.Tenants[c.Name] = t
	if c.Key.ScopeType != ScopeTenant || !slices.Equal(c.Key.ScopeValues, []string{c.Name}) {
		s.rollbackTenant(p, t)
		return nil, errorf(CodeBadRequest, "a tenant's own key must be scoped to that tenant")
	}
	if err := s.addKey(p, c.Key, c.At); err != nil {
		s.rollbackTenant(p, t)
		return nil, err
	}
	return nil, nil
}

func (s *State) rollbackTenant(p *Project, t *Tenant) {
	delete(p.Tenants, t.Name)
	delete(s.Databases, t.Database)
}

func applyDeleteTenant(s *State, _ uint64, c *DeleteTenant) (any, error) {
	p, err := s.existingProject(c.ProjectID)
	if err != nil {
		return nil, err
	}
	t := p.Tenants[c.Name]
	if t == nil {
		return nil, errorf(CodeNotFound, "tenant %q not found", c.Name)
	}
	if d := s.Databases[t.Database]; d != nil {
		d.Status = StatusDeleting
		d.Error = ""
	}
	// A key must never reach a later tenant that reuses the name.
	forgetTenant(p, c.Name, c.At)
	if s.ActiveLogVersion() >= 6 {
		s.leaveJobs(p.ID, t.Blueprint, c.Name, c.At)
	}
	return nil, nil
}

// leaveJobs takes a tenant being deleted out of the deployments and imports
// of its blueprint still in progress, where it is still to do (pending, or
// running: its database is dropped under the work), and out of the failed
// tenants of imports a retry would take up again. Before, it failed there
// with "tenant … was deleted", and so did the whole deployment or import,
// which a retry could never complete. Its other results stay, as a record.
func (s *State) leaveJobs(projectID, blueprint, tenant string, at time.Time) {
	todo := func(status string) bool { return status == TenantPending || status == TenantRunning }
	for _, d := range s.Deployments {
		if d.ProjectID != projectID || d.Blueprint != blueprint || d.Status != DeploymentInProgress {
			continue
		}
		d.Results = slices.DeleteFunc(d.Results, func(r *DeploymentResult) bool { return r.Tenant == tenant && todo(r.Status) })
		d.finishIfDone(at)
	}
	for _, im := range s.Imports {
		if im.ProjectID != projectID || im.Workspace != blueprint || im.Status == DeploymentCompleted {
			continue
		}
		// A failed import's failed tenant goes too: a retry would copy the
		// routing value's rows into whatever tenant takes the name next.
		im.Tenants = slices.DeleteFunc(im.Tenants, func(t *ImportTenant) bool {
			return t.Tenant == tenant && (todo(t.Status) || t.Status == TenantFailed)
		})
		switch {
		case im.Status == DeploymentInProgress:
			im.finishIfDone(at)
		case im.Status == DeploymentFailed:
			if _, failed := im.Counts(); failed == 0 {
				// Its only failures were the tenant's: every tenant left
				// has its rows. It keeps the time it finished.
				im.Status = DeploymentCompleted
			}
		}
	}
}

// forgetTenant takes a tenant's name from the keys scoped to it, and revokes
// at at those left with no tenant.
func forgetTenant(p *Project, name string, at time.Time) {
	for _, k := range p.Keys {
		if k.ScopeType != ScopeTenant || !slices.Contains(k.ScopeValues, name) {
			continue
		}
		k.ScopeValues = slices.DeleteFunc(slices.Clone(k.ScopeValues), func(v string) bool { return v == name })
		if len(k.ScopeValues) == 0 && k.RevokedAt == nil {
			k.RevokedAt = &at
		}
	}
}

func applySetDatabaseStatus(s *State, _ uint64, c *SetDatabaseStatus) (any, error) {
	d := s.Databases[c.Name]
	if d == nil {
		return nil, errorf(CodeNotFound, "database %s not found", c.Name)
	}
	switch c.Status {
	case StatusProvisioning, StatusReady, StatusFailed:
	default:
		return nil, errorf(CodeBadRequest, "invalid database status %q", c.Status)
	}
	if d.Status == StatusDeleting {
		// Deletion wins over a provisioning result that raced with it.
		return nil, errorf(CodeConflict, "database %s is being deleted", c.Name)
	}
	if d.Status != StatusProvisioning && s.ActiveLogVersion() >= 2 {
		// A result that comes late, from a leader that lost its place
		// while the next one finished the database, would undo that one's
		// (a failure over ready, an older schema version over the one a
		// deployment reached).
		return nil, errorf(CodeConflict, "database %s is %s, not being provisioned", c.Name, d.Status)
	}
	d.Status = c.Status
	d.Error = c.Error
	if c.SchemaVersion != nil {
		d.SchemaVersion = *c.SchemaVersion
	}
	return nil, nil
}

func applySetDatabaseGuard(s *State, _ uint64, c *SetDatabaseGuard) (any, error) {
	d := s.Databases[c.Name]
	if d == nil {
		return nil, errorf(CodeNotFound, "database %s not found", c.Name)
	}
	if c.Version < 1 {
		return nil, errorf(CodeBadRequest, "invalid guard version %d", c.Version)
	}
	d.Guard = max(d.Guard, c.Version)
	return nil, nil
}

func applyRemoveDatabase(s *State, _ uint64, c *RemoveDatabase) (any, error) {
	d := s.Databases[c.Name]
	if d == nil {
		return nil, nil
	}
	if d.Status != StatusDeleting {
		return nil, errorf(CodeConflict, "database %s is not being deleted", c.Name)
	}
	if p := s.Projects[d.ProjectID]; p != nil {
		for name, t := range p.Tenants {
			if t.Database == d.Name {
				delete(p.Tenants, name)
				if s.ActiveLogVersion() >= 4 {
					// Keys made while it was being deleted, by builds
					// that did not refuse them, lose the name too.
					forgetTenant(p, name, c.At)
				}
			}
		}
	}
	delete(s.Databases, c.Name)
	return nil, nil
}
