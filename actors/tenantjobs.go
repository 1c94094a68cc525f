package actors

import (
	"context"
	"sync"
	"time"

	"tdb/fsm"
)

// tenantJob is one tenant's share of a leader-run job (a deployment or an
// import): its name, and whether it must wait (database still provisioning).
type tenantJob interface {
	tenantName() string
	waiting() bool
}

func (j TenantJob) tenantName() string { return j.Tenant }
func (j TenantJob) waiting() bool      { return j.Wait }
func (j ImportJob) tenantName() string { return j.Tenant }
func (j ImportJob) waiting() bool      { return j.Wait }

// planRoom plans, in order, the tenants of a job's list still to do (todo)
// that are not in flight, until the jobs that can start fill the room
// concurrency leaves; those that wait for their database take none.
func planRoom[T any, J tenantJob](list []T, concurrency int, inflight map[string]bool,
	todo func(T) (tenant string, ok bool), plan func(T) J) []J {
	room := concurrency - len(inflight)
	var jobs []J
	for _, it := range list {
		if room <= 0 {
			break
		}
		if tenant, ok := todo(it); !ok || inflight[tenant] {
			continue
		}
		job := plan(it)
		jobs = append(jobs, job)
		if !job.waiting() {
			room--
		}
	}
	return jobs
}

// runTenantJobs works on a job's tenants, at most its concurrency at a time,
// until plan reports it finished or ctx ends. plan reads the state (under
// the FSM's read lock) and lists the tenants still to do that are not in
// flight; it is re-run after every change, worker end or resync tick.
func runTenantJobs[J tenantJob](ctx context.Context, f *fsm.FSM, resync time.Duration,
	plan func(s *fsm.State, inflight map[string]bool) (jobs []J, concurrency int, finished bool),
	work func(ctx context.Context, job J)) {
	done := make(chan string, fsm.MaxDeployConcurrency)
	inflight := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		if ctx.Err() != nil {
			return // also when a worker's end and ctx's raced in the select below
		}
		changed := f.Changed()
		var jobs []J
		var conc int
		finished := true
		f.View(func(s *fsm.State) { jobs, conc, finished = plan(s, inflight) })
		if finished {
			return
		}
		for _, job := range jobs {
			if len(inflight) >= conc {
				break
			}
			if job.waiting() {
				continue
			}
			inflight[job.tenantName()] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				work(ctx, job)
				done <- job.tenantName()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case t := <-done:
			delete(inflight, t)
		case <-changed:
		case <-tick.C:
		}
	}
}
