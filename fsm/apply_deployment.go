package fsm

import (
	"slices"
	"time"
)

// CreateDeployment starts bringing the listed tenants of a blueprint to a
// target version. The proposer lists the tenants (the blueprint's tenants at
// that moment) and mints the id. Tenants already at or past the target are
// done at once. The response is the deployment id.
type CreateDeployment struct {
	ID          string    `json:"id"`
	ProjectID   string    `json:"project_id"`
	Blueprint   string    `json:"blueprint"`
	Version     int       `json:"version"`
	Tenants     []string  `json:"tenants"`
	Concurrency int       `json:"concurrency"` // 0: DefaultDeployConcurrency
	KeyID       string    `json:"key_id"`
	At          time.Time `json:"at"`
}

// SetDeploymentResult records the deployer's progress on one tenant: running
// when it starts (again, after a leader change), then done or failed. A done or
// failed result also sets the schema version of the tenant's database to the
// version reached, in the same command, so the two never disagree. The
// deployment finishes with the last tenant's final result.
type SetDeploymentResult struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	FromVersion int       `json:"from_version"`
	Version     int       `json:"version"` // reached; ignored for running
	DurationMs  int64     `json:"duration_ms"`
	At          time.Time `json:"at"`
}

func init() {
	register(CmdCreateDeployment, applyCreateDeployment)
	register(CmdSetDeploymentResult, applySetDeploymentResult)
}

func applyCreateDeployment(s *State, _ uint64, c *CreateDeployment) (any, error) {
	p, err := s.existingProject(c.ProjectID)
	if err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, errorf(CodeBadRequest, "a deployment needs an id")
	}
	if s.Deployments[c.ID] != nil {
		return nil, errorf(CodeConflict, "deployment %s already exists", c.ID)
	}
	w := p.Workspaces[c.Blueprint]
	if w == nil {
		return nil, errorf(CodeNotFound, "blueprint %q not found", c.Blueprint)
	}
	if w.Mode != ModeTenant {
		return nil, errorf(CodeBadRequest, "workspace %q is in %s mode: only tenant-mode blueprints are deployed", c.Blueprint, w.Mode)
	}
	if w.LatestVersion() == 0 {
		return nil, errorf(CodeBadRequest, "blueprint %q has no versions to deploy: run DDL in %s first", c.Blueprint, WorkspaceDatabase(c.Blueprint))
	}
	if c.Version < 1 || c.Version > w.LatestVersion() {
		return nil, errorf(CodeBadRequest, "blueprint %q has versions 1 to %d, not %d", c.Blueprint, w.LatestVersion(), c.Version)
	}
	conc := c.Concurrency
	if conc == 0 {
		conc = DefaultDeployConcurrency
	}
	if conc < 1 || conc > MaxDeployConcurrency {
		return nil, errorf(CodeBadRequest, "concurrency must be between 1 and %d", MaxDeployConcurrency)
	}
	if a := s.ActiveDeployment(c.ProjectID, c.Blueprint); a != nil {
		return nil, errorf(CodeConflict, "deployment %s of blueprint %q is still in progress", a.ID, c.Blueprint)
	}
	names := slices.Clone(c.Tenants)
	slices.Sort(names)
	names = slices.Compact(names)
	d := &Deployment{
		ID: c.ID, ProjectID: c.ProjectID, Blueprint: c.Blueprint, TargetVersion: c.Version,
		Concurrency: conc, KeyID: c.KeyID, Status: DeploymentInProgress, CreatedAt: c.At,
		Results: make([]*DeploymentResult, 0, len(names)),
	}
	for _, name := range names {
		t := p.Tenants[name]
		if t == nil || t.Blueprint != c.Blueprint {
			return nil, errorf(CodeNotFound, "tenant %q of blueprint %q not found", name, c.Blueprint)
		}
		if s.Deleting(t) && s.ActiveLogVersion() >= 6 {
			// Deleted since the proposer listed it: left out, as
			// leaveJobs would have taken it out a moment later.
			continue
		}
		r := &DeploymentResult{Tenant: name, Status: TenantPending}
		if db := s.Databases[t.Database]; db != nil && db.Status == StatusReady && db.SchemaVersion >= c.Version {
			at := c.At
			r.Status, r.FromVersion, r.Version, r.FinishedAt = TenantDone, db.SchemaVersion, db.SchemaVersion, &at
		}
		d.Results = append(d.Results, r)
	}
	d.finishIfDone(c.At)
	s.Deployments[d.ID] = d
	return d.ID, nil
}

func applySetDeploymentResult(s *State, _ uint64, c *SetDeploymentResult) (any, error) {
	d := s.Deployments[c.ID]
	if d == nil {
		return nil, errorf(CodeNotFound, "deployment %s not found", c.ID)
	}
	if d.Status != DeploymentInProgress {
		return nil, errorf(CodeConflict, "deployment %s is %s", c.ID, d.Status)
	}
	r := d.Result(c.Tenant)
	if r == nil {
		return nil, errorf(CodeNotFound, "tenant %q is not part of deployment %s", c.Tenant, c.ID)
	}
	if r.Status == TenantDone || r.Status == TenantFailed {
		// Results are final: a deployer that lost leadership cannot undo one.
		return nil, errorf(CodeConflict, "tenant %q of deployment %s is already %s", c.Tenant, c.ID, r.Status)
	}
	at := c.At
	switch c.Status {
	case TenantRunning:
		r.Status, r.Error, r.FromVersion, r.StartedAt = TenantRunning, "", c.FromVersion, &at
		r.Attempts++
		return nil, nil
	case TenantDone:
		if c.Version < d.TargetVersion {
			return nil, errorf(CodeBadRequest, "tenant %q cannot be done at version %d: the target is %d", c.Tenant, c.Version, d.TargetVersion)
		}
		r.Error = ""
	case TenantFailed:
		if c.Error == "" {
			return nil, errorf(CodeBadRequest, "a failed tenant needs an error")
		}
		r.Error = c.Error
	default:
		return nil, errorf(CodeBadRequest, "invalid tenant status %q: must be running, done or failed", c.Status)
	}
	r.Status, r.FromVersion, r.Version, r.DurationMs, r.FinishedAt = c.Status, c.FromVersion, c.Version, c.DurationMs, &at
	if p := s.Projects[d.ProjectID]; p != nil {
		if t := p.Tenants[c.Tenant]; t != nil && t.Blueprint == d.Blueprint {
			if db := s.Databases[t.Database]; db != nil && c.Version > db.SchemaVersion {
				db.SchemaVersion = c.Version
			}
		}
	}
	d.finishIfDone(c.At)
	return nil, nil
}

// finishIfDone closes the deployment once every tenant is done or failed.
func (d *Deployment) finishIfDone(at time.Time) {
	if !d.Finished() {
		return
	}
	d.Status = DeploymentCompleted
	if _, failed := d.Counts(); failed > 0 {
		d.Status = DeploymentFailed
	}
	d.FinishedAt = &at
}
