package actors

import (
	"context"
	"time"

	"tdb/fsm"
)

// Deployer runs on the raft leader and carries out the deployments in the
// FSM: for every tenant of an in-progress deployment it applies the blueprint
// versions the tenant lacks and records the result. All progress lives in the
// FSM, so a new leader resumes where the old one stopped: tenants done or
// failed are final, a tenant left running is retried (safe: see applyTenant).
type Deployer struct {
	LeaderActor
	Apply ApplyConfig // how versions are applied to one tenant
}

// Run starts a runner for every in-progress deployment while this node leads,
// and stops them all when it no longer does, until ctx ends.
func (d *Deployer) Run(ctx context.Context) {
	d.defaults()
	d.Apply.defaults()
	d.supervise(ctx, func(s *fsm.State) []string {
		return inProgress(s.Deployments, func(dep *fsm.Deployment) string { return dep.Status })
	}, d.runDeployment)
}

// TenantJob is the work on one tenant of a deployment, planned from the state.
type TenantJob struct {
	Deployment string
	Tenant     string
	Wait       bool   // the tenant's database is still being provisioned: not yet
	Fail       string // the tenant cannot be worked on; recorded as its error
	BackendURL string
	Database   string // physical database
	From       int    // the tenant's schema version in the FSM
	Target     int
	Versions   []fsm.BlueprintVersion // those after From, up to Target
}

// PlanTenant decides what to do for one tenant result of a deployment. It is
// the synchronous core of the deployer.
func PlanTenant(s *fsm.State, dep *fsm.Deployment, tenant string) TenantJob {
	job := TenantJob{Deployment: dep.ID, Tenant: tenant, Target: dep.TargetVersion}
	p := s.Projects[dep.ProjectID]
	var t *fsm.Tenant
	var w *fsm.Workspace
	if p != nil {
		t, w = p.Tenants[tenant], p.Workspaces[dep.Blueprint]
	}
	var db *fsm.Database
	if t != nil && t.Blueprint == dep.Blueprint {
		db = s.Databases[t.Database]
	}
	switch {
	case w == nil:
		job.Fail = "blueprint " + dep.Blueprint + " was deleted"
		return job
	case db == nil || db.Status == fsm.StatusDeleting:
		job.Fail = "tenant " + tenant + " was deleted"
		return job
	case db.Status == fsm.StatusProvisioning:
		job.Wait = true
		return job
	case db.Status == fsm.StatusFailed:
		job.Fail = "tenant database failed to provision: " + db.Error
		return job
	}
	b := s.Backends[db.Backend]
	if b == nil {
		job.Fail = "backend " + db.Backend + " is not registered"
		return job
	}
	job.BackendURL, job.Database, job.From = b.URL, db.Name, db.SchemaVersion
	for _, v := range w.Versions {
		if v.Version > job.From && v.Version <= job.Target {
			job.Versions = append(job.Versions, v)
		}
	}
	return job
}

// runDeployment works on one deployment's tenants, at most its concurrency
// at a time, until it is finished or ctx ends.
func (d *Deployer) runDeployment(ctx context.Context, id string) {
	runTenantJobs(ctx, d.FSM, d.Resync, func(s *fsm.State, inflight map[string]bool) ([]TenantJob, int, bool) {
		return planDeployment(s, id, inflight)
	}, d.work)
}

// planDeployment plans the tenants of deployment id still to do that are
// not in flight, in order, until the jobs that can start fill the room its
// concurrency leaves: it runs after every change of the state, and planning
// all of thousands of tenants each time made a deployment's cost grow with
// the square of their number.
func planDeployment(s *fsm.State, id string, inflight map[string]bool) ([]TenantJob, int, bool) {
	dep := s.Deployments[id]
	if dep == nil || dep.Status != fsm.DeploymentInProgress {
		return nil, 0, true
	}
	jobs := planRoom(dep.Results, dep.Concurrency, inflight, func(r *fsm.DeploymentResult) (string, bool) {
		return r.Tenant, r.Status == fsm.TenantPending || r.Status == fsm.TenantRunning
	}, func(r *fsm.DeploymentResult) TenantJob { return PlanTenant(s, dep, r.Tenant) })
	return jobs, dep.Concurrency, false
}

// work brings one tenant to the target version and records the result. When
// ctx ends first (leadership lost, node stopping), or a later leader has
// fenced the backend (fencedOut), nothing is recorded: the tenant stays
// running and the next leader retries it.
func (d *Deployer) work(ctx context.Context, job TenantJob) {
	if job.Fail != "" {
		d.record(ctx, &fsm.SetDeploymentResult{ID: job.Deployment, Tenant: job.Tenant, Status: fsm.TenantFailed,
			Error: job.Fail, FromVersion: job.From, Version: job.From})
		return
	}
	if !d.record(ctx, &fsm.SetDeploymentResult{ID: job.Deployment, Tenant: job.Tenant, Status: fsm.TenantRunning, FromVersion: job.From}) {
		return
	}
	start := time.Now()
	reached, err := applyTenant(ctx, d.Apply, job)
	if ctx.Err() != nil {
		return
	}
	if fencedOut(ctx, job.BackendURL, err) {
		d.Logf("deployer: %s: tenant %s stopped, a later leader acts on its backend: %v", job.Deployment, job.Tenant, err)
		return
	}
	res := &fsm.SetDeploymentResult{ID: job.Deployment, Tenant: job.Tenant, Status: fsm.TenantDone,
		FromVersion: job.From, Version: reached, DurationMs: time.Since(start).Milliseconds()}
	if err != nil {
		res.Status, res.Error = fsm.TenantFailed, err.Error()
		d.Logf("deployer: %s: tenant %s failed at version %d: %v", job.Deployment, job.Tenant, reached, err)
	}
	d.record(ctx, res)
}

// record commits a tenant result; it reports whether the work may go on.
func (d *Deployer) record(ctx context.Context, res *fsm.SetDeploymentResult) bool {
	res.At = d.Now().UTC()
	return d.recordResult(ctx, fsm.CmdSetDeploymentResult, res, d.Apply.Backoff,
		"deployer: record %s of tenant %s in %s", res.Status, res.Tenant, res.ID)
}
