package actors

import (
	"context"
	"time"

	"tdb/fsm"
)

// Importer runs on the raft leader and copies the rows of in-progress
// imports (import-full) into their tenants, at most the import's
// concurrency at a time, recording each tenant's result in the FSM. A tenant
// left running by a crashed leader is copied again, unless the database's
// marker says that copy committed: the copy empties the tenant's tables in
// the same transaction, so rows are never duplicated, and a committed one
// is not made again over rows written since.
type Importer struct {
	LeaderActor
	Copy ApplyConfig // connection retries and the per-tenant timeout
}

// Run starts a runner per in-progress import while this node leads, until
// ctx ends.
func (m *Importer) Run(ctx context.Context) {
	m.defaults()
	m.Copy.defaults()
	m.supervise(ctx, func(s *fsm.State) []string {
		return inProgress(s.Imports, func(im *fsm.Import) string { return im.Status })
	}, m.runImport)
}

func (m *Importer) runImport(ctx context.Context, id string) {
	runTenantJobs(ctx, m.FSM, m.Resync, func(s *fsm.State, inflight map[string]bool) ([]ImportJob, int, bool) {
		return planImport(s, id, inflight)
	}, m.work)
}

// planImport is planDeployment for import id.
func planImport(s *fsm.State, id string, inflight map[string]bool) ([]ImportJob, int, bool) {
	im := s.Imports[id]
	if im == nil || im.Status != fsm.DeploymentInProgress {
		return nil, 0, true
	}
	jobs := planRoom(im.Tenants, im.Concurrency, inflight, func(t *fsm.ImportTenant) (string, bool) {
		return t.Tenant, t.Status == fsm.TenantPending || t.Status == fsm.TenantRunning
	}, func(t *fsm.ImportTenant) ImportJob { return PlanImportTenant(s, im, t) })
	return jobs, im.Concurrency, false
}

func (m *Importer) work(ctx context.Context, job ImportJob) {
	if job.Fail != "" {
		m.record(ctx, &fsm.SetImportTenant{ID: job.Import, Tenant: job.Tenant, Status: fsm.TenantFailed, Error: job.Fail})
		return
	}
	if !m.record(ctx, &fsm.SetImportTenant{ID: job.Import, Tenant: job.Tenant, Status: fsm.TenantRunning}) {
		return
	}
	start := time.Now()
	rows, err := copyTenant(ctx, m.Copy, job)
	if ctx.Err() != nil {
		return
	}
	if fencedOut(ctx, job.BackendURL, err) {
		m.Logf("importer: %s: tenant %s stopped, a later leader acts on its backend: %v", job.Import, job.Tenant, err)
		return
	}
	res := &fsm.SetImportTenant{ID: job.Import, Tenant: job.Tenant, Status: fsm.TenantDone, Rows: rows,
		DurationMs: time.Since(start).Milliseconds()}
	if err != nil {
		res.Status, res.Error, res.Rows = fsm.TenantFailed, err.Error(), 0
		m.Logf("importer: %s: tenant %s failed: %v", job.Import, job.Tenant, err)
	}
	m.record(ctx, res)
}

// record commits a tenant result; it reports whether the work may go on.
func (m *Importer) record(ctx context.Context, res *fsm.SetImportTenant) bool {
	res.At = m.Now().UTC()
	return m.recordResult(ctx, fsm.CmdSetImportTenant, res, m.Copy.Backoff,
		"importer: record %s of tenant %s in %s", res.Status, res.Tenant, res.ID)
}
