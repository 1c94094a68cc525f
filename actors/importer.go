package actors

import (
	"context"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
)

// Importer runs on the raft leader and copies the rows of in-progress
// imports (import-full) into their tenants, at most the import's
// concurrency at a time, recording each tenant's result in the FSM. A tenant
// left running by a crashed leader is copied again: the copy empties the
// tenant's tables in the same transaction, so rows are never duplicated.
type Importer struct {
	FSM      *fsm.FSM
	Propose  Proposer
	IsLeader func() bool
	Logf     func(format string, args ...any)
	Now      func() time.Time

	Resync time.Duration
	Copy   ApplyConfig // connection retries and the per-tenant timeout

	mu      sync.Mutex
	running map[string]context.CancelFunc
}

func (m *Importer) defaults() {
	if m.Resync <= 0 {
		m.Resync = 2 * time.Second
	}
	if m.Logf == nil {
		m.Logf = log.Printf
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	m.Copy.defaults()
	m.running = map[string]context.CancelFunc{}
}

// Run starts a runner per in-progress import while this node leads, until
// ctx ends.
func (m *Importer) Run(ctx context.Context) {
	m.defaults()
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(m.Resync)
	defer tick.Stop()
	for {
		changed := m.FSM.Changed()
		if m.IsLeader() {
			var ids []string
			m.FSM.View(func(s *fsm.State) {
				for id, im := range s.Imports {
					if im.Status == fsm.DeploymentInProgress {
						ids = append(ids, id)
					}
				}
			})
			sort.Strings(ids)
			for _, id := range ids {
				rctx, cancel := context.WithCancel(ctx)
				if !m.start(id, cancel) {
					cancel()
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer m.stop(id)
					m.runImport(rctx, id)
				}()
			}
		} else {
			m.stopAll()
		}
		select {
		case <-ctx.Done():
			m.stopAll()
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (m *Importer) start(id string, cancel context.CancelFunc) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running[id] != nil {
		return false
	}
	m.running[id] = cancel
	return true
}

func (m *Importer) stop(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cancel := m.running[id]; cancel != nil {
		cancel()
		delete(m.running, id)
	}
}

func (m *Importer) stopAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, cancel := range m.running {
		cancel()
		delete(m.running, id)
	}
}

func (m *Importer) runImport(ctx context.Context, id string) {
	runTenantJobs(ctx, m.FSM, m.Resync, func(s *fsm.State, inflight map[string]bool) ([]ImportJob, int, bool) {
		im := s.Imports[id]
		if im == nil || im.Status != fsm.DeploymentInProgress {
			return nil, 0, true
		}
		var jobs []ImportJob
		for _, t := range im.Tenants {
			if (t.Status == fsm.TenantPending || t.Status == fsm.TenantRunning) && !inflight[t.Tenant] {
				jobs = append(jobs, PlanImportTenant(s, im, t))
			}
		}
		return jobs, im.Concurrency, false
	}, m.work)
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
	res := &fsm.SetImportTenant{ID: job.Import, Tenant: job.Tenant, Status: fsm.TenantDone, Rows: rows,
		DurationMs: time.Since(start).Milliseconds()}
	if err != nil {
		res.Status, res.Error, res.Rows = fsm.TenantFailed, err.Error(), 0
		m.Logf("importer: %s: tenant %s failed: %v", job.Import, job.Tenant, err)
	}
	m.record(ctx, res)
}

func (m *Importer) record(ctx context.Context, res *fsm.SetImportTenant) bool {
	if ctx.Err() != nil {
		return false // stopping: the next leader takes over from the FSM
	}
	res.At = m.Now().UTC()
	_, _, err := m.Propose.Apply(ctx, fsm.CmdSetImportTenant, res)
	if err == nil {
		return true
	}
	var fe *fsm.Error
	if !errors.As(err, &fe) {
		m.Logf("importer: record %s of tenant %s in %s: %v", res.Status, res.Tenant, res.ID, err)
		select {
		case <-time.After(m.Copy.Backoff):
		case <-ctx.Done():
		}
	}
	return false
}
