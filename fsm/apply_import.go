package fsm

import (
	"slices"
	"time"
)

// CreateImport records an import whose schema is already the workspace's
// blueprint and whose tenants already exist (the proposer made both); the
// leader's importer then copies each tenant's rows. The response is the id.
type CreateImport struct {
	ID           string             `json:"id"`
	ProjectID    string             `json:"project_id"`
	Workspace    string             `json:"workspace"`
	SourceURL    string             `json:"source_url"`
	RoutingField string             `json:"routing_field"`
	Concurrency  int                `json:"concurrency"`
	Tables       []ImportTable      `json:"tables"`
	Unrouted     []string           `json:"unrouted"`
	NotCopied    []string           `json:"not_copied,omitempty"`
	Tenants      []ImportTenantSpec `json:"tenants"`
	KeyID        string             `json:"key_id"`
	At           time.Time          `json:"at"`
}

// ImportTenantSpec pairs a tenant with the routing value whose rows it gets.
type ImportTenantSpec struct {
	Tenant string `json:"tenant"`
	Value  string `json:"value"`
}

// SetImportTenant records the importer's progress on one tenant: running
// when it starts (again), then done (with the rows copied) or failed. The
// import finishes with the last tenant's final result.
type SetImportTenant struct {
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	Status     string    `json:"status"`
	Error      string    `json:"error,omitempty"`
	Rows       int64     `json:"rows"`
	DurationMs int64     `json:"duration_ms"`
	At         time.Time `json:"at"`
}

// RetryImport puts the failed tenants of a failed import back to pending.
// The response is how many.
type RetryImport struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

func init() {
	register(CmdCreateImport, applyCreateImport)
	register(CmdSetImportTenant, applySetImportTenant)
	register(CmdRetryImport, applyRetryImport)
}

func applyCreateImport(s *State, _ uint64, c *CreateImport) (any, error) {
	p, err := s.existingProject(c.ProjectID)
	if err != nil {
		return nil, err
	}
	if c.ID == "" || s.Imports[c.ID] != nil {
		return nil, errorf(CodeConflict, "import %q already exists", c.ID)
	}
	w := p.Workspaces[c.Workspace]
	if w == nil {
		return nil, errorf(CodeNotFound, "workspace %q not found", c.Workspace)
	}
	if w.Mode != ModeTenant {
		return nil, errorf(CodeBadRequest, "workspace %q is in %s mode: imports split rows into tenants of a tenant-mode workspace", c.Workspace, w.Mode)
	}
	if len(c.Tables) == 0 || c.RoutingField == "" || c.SourceURL == "" {
		return nil, errorf(CodeBadRequest, "an import needs a source, a routing field and tables")
	}
	conc := c.Concurrency
	if conc == 0 {
		conc = DefaultDeployConcurrency
	}
	if conc < 1 || conc > MaxDeployConcurrency {
		return nil, errorf(CodeBadRequest, "concurrency must be between 1 and %d", MaxDeployConcurrency)
	}
	if prev := s.ImportOf(c.ProjectID, c.Workspace); prev != nil && prev.Status == DeploymentInProgress {
		return nil, errorf(CodeConflict, "import %s into workspace %q is still in progress", prev.ID, c.Workspace)
	}
	specs := slices.Clone(c.Tenants)
	slices.SortFunc(specs, func(a, b ImportTenantSpec) int {
		switch {
		case a.Tenant < b.Tenant:
			return -1
		case a.Tenant > b.Tenant:
			return 1
		}
		return 0
	})
	im := &Import{
		ID: c.ID, ProjectID: c.ProjectID, Workspace: c.Workspace, SourceURL: c.SourceURL,
		RoutingField: c.RoutingField, Concurrency: conc, Tables: c.Tables, Unrouted: c.Unrouted,
		NotCopied: c.NotCopied,
		Status:    DeploymentInProgress, KeyID: c.KeyID, CreatedAt: c.At,
	}
	for i, sp := range specs {
		if i > 0 && specs[i-1].Tenant == sp.Tenant {
			return nil, errorf(CodeBadRequest, "tenant %q appears twice in the import", sp.Tenant)
		}
		t := p.Tenants[sp.Tenant]
		if t == nil || t.Blueprint != c.Workspace {
			return nil, errorf(CodeNotFound, "tenant %q of blueprint %q not found", sp.Tenant, c.Workspace)
		}
		if s.Deleting(t) && s.ActiveLogVersion() >= 6 {
			continue // deleted since the proposer listed it (see applyCreateDeployment)
		}
		im.Tenants = append(im.Tenants, &ImportTenant{Tenant: sp.Tenant, Value: sp.Value, Status: TenantPending})
	}
	im.finishIfDone(c.At)
	s.Imports[im.ID] = im
	return im.ID, nil
}

func applySetImportTenant(s *State, _ uint64, c *SetImportTenant) (any, error) {
	im := s.Imports[c.ID]
	if im == nil {
		return nil, errorf(CodeNotFound, "import %s not found", c.ID)
	}
	if im.Status != DeploymentInProgress {
		return nil, errorf(CodeConflict, "import %s is %s", c.ID, im.Status)
	}
	t := im.Tenant(c.Tenant)
	if t == nil {
		return nil, errorf(CodeNotFound, "tenant %q is not part of import %s", c.Tenant, c.ID)
	}
	if t.Status == TenantDone || t.Status == TenantFailed {
		return nil, errorf(CodeConflict, "tenant %q of import %s is already %s", c.Tenant, c.ID, t.Status)
	}
	switch c.Status {
	case TenantRunning:
		t.Status, t.Error = TenantRunning, ""
		t.Attempts++
		return nil, nil
	case TenantDone:
		t.Error = ""
	case TenantFailed:
		if c.Error == "" {
			return nil, errorf(CodeBadRequest, "a failed tenant needs an error")
		}
		t.Error = c.Error
	default:
		return nil, errorf(CodeBadRequest, "invalid tenant status %q: must be running, done or failed", c.Status)
	}
	t.Status, t.Rows, t.DurationMs = c.Status, c.Rows, c.DurationMs
	im.finishIfDone(c.At)
	return nil, nil
}

func applyRetryImport(s *State, _ uint64, c *RetryImport) (any, error) {
	im := s.Imports[c.ID]
	if im == nil {
		return nil, errorf(CodeNotFound, "import %s not found", c.ID)
	}
	if im.Status != DeploymentFailed {
		return nil, errorf(CodeConflict, "import %s is %s: only a failed import is retried", c.ID, im.Status)
	}
	if s.ActiveLogVersion() >= 6 {
		// A failed tenant deleted since (or before log version 6, when a
		// deleted tenant failed) would only fail again.
		p := s.Projects[im.ProjectID]
		im.Tenants = slices.DeleteFunc(im.Tenants, func(it *ImportTenant) bool {
			return it.Status == TenantFailed && !s.liveTenantOf(p, it.Tenant, im.Workspace)
		})
	}
	n := 0
	for _, t := range im.Tenants {
		if t.Status == TenantFailed {
			t.Status, t.Error = TenantPending, ""
			n++
		}
	}
	im.Status, im.FinishedAt = DeploymentInProgress, nil
	im.finishIfDone(c.At)
	return n, nil
}

// liveTenantOf reports whether p has a tenant named name of blueprint that
// is not being deleted.
func (s *State) liveTenantOf(p *Project, name, blueprint string) bool {
	if p == nil {
		return false
	}
	t := p.Tenants[name]
	if t == nil || t.Blueprint != blueprint {
		return false
	}
	d := s.Databases[t.Database]
	return d != nil && d.Status != StatusDeleting
}
