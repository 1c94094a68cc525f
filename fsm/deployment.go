package fsm

import (
	"sort"
	"time"
)

// Deployment statuses.
const (
	DeploymentInProgress = "in_progress"
	DeploymentCompleted  = "completed" // every tenant reached the target version
	DeploymentFailed     = "failed"    // finished, with at least one tenant failed
)

// Per-tenant statuses within a deployment.
const (
	TenantPending = "pending"
	TenantRunning = "running" // started; a new leader retries it
	TenantDone    = "done"
	TenantFailed  = "failed"
)

// DefaultDeployConcurrency is how many tenants a deployment works on at once
// unless it asks otherwise.
const DefaultDeployConcurrency = 4

// MaxDeployConcurrency bounds a deployment's concurrency.
const MaxDeployConcurrency = 64

// Deployment brings the tenants of a blueprint, as listed when it was
// created, to a target blueprint version. The leader's deployer does the work
// and records each tenant's result here, so a new leader resumes it.
type Deployment struct {
	ID            string              `json:"id"`
	ProjectID     string              `json:"project_id"`
	Blueprint     string              `json:"blueprint"`
	TargetVersion int                 `json:"target_version"`
	Concurrency   int                 `json:"concurrency"`
	KeyID         string              `json:"key_id"`
	Status        string              `json:"status"`
	CreatedAt     time.Time           `json:"created_at"`
	FinishedAt    *time.Time          `json:"finished_at,omitempty"`
	Results       []*DeploymentResult `json:"results"` // ordered by tenant name
}

// DeploymentResult is one tenant's progress within a deployment.
type DeploymentResult struct {
	Tenant      string     `json:"tenant"`
	Status      string     `json:"status"`
	Error       string     `json:"error,omitempty"`
	FromVersion int        `json:"from_version"` // the tenant's schema version when the work started
	Version     int        `json:"version"`      // the version it reached
	DurationMs  int64      `json:"duration_ms"`
	Attempts    int        `json:"attempts"` // times the work was started (a new leader retries)
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// Result returns the deployment's result for a tenant, or nil.
func (d *Deployment) Result(tenant string) *DeploymentResult {
	i := sort.Search(len(d.Results), func(i int) bool { return d.Results[i].Tenant >= tenant })
	if i < len(d.Results) && d.Results[i].Tenant == tenant {
		return d.Results[i]
	}
	return nil
}

// Counts returns how many tenants are done and how many failed.
func (d *Deployment) Counts() (done, failed int) {
	for _, r := range d.Results {
		switch r.Status {
		case TenantDone:
			done++
		case TenantFailed:
			failed++
		}
	}
	return done, failed
}

// Finished reports whether no tenant is left to work on.
func (d *Deployment) Finished() bool {
	done, failed := d.Counts()
	return done+failed == len(d.Results)
}

// Copy returns a deep copy that outlives a View.
func (d *Deployment) Copy() *Deployment {
	c := *d
	if d.FinishedAt != nil {
		at := *d.FinishedAt
		c.FinishedAt = &at
	}
	c.Results = make([]*DeploymentResult, len(d.Results))
	for i, r := range d.Results {
		rc := *r
		c.Results[i] = &rc
	}
	return &c
}

// ActiveDeployment returns the in-progress deployment of a blueprint, or nil.
func (s *State) ActiveDeployment(projectID, blueprint string) *Deployment {
	for _, d := range s.Deployments {
		if d.ProjectID == projectID && d.Blueprint == blueprint && d.Status == DeploymentInProgress {
			return d
		}
	}
	return nil
}

// SortedDeployments returns a project's deployments, newest first (ties by id).
func (s *State) SortedDeployments(projectID string) []*Deployment {
	var out []*Deployment
	for _, d := range s.Deployments {
		if d.ProjectID == projectID {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out
}
