package httpapi

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"tdb/fsm"
)

// DeploymentResult is one tenant's part of a deployment.
type DeploymentResult struct {
	TenantID    string `json:"tenant_id"`
	Status      string `json:"status"` // pending | running | done | failed
	Error       string `json:"error"`
	DurationMs  int64  `json:"duration_ms"`
	FromVersion int    `json:"from_version"`
	Version     int    `json:"version"`
	Attempts    int    `json:"attempts"`
}

// Deployment is a blueprint deployment as the API shows it.
type Deployment struct {
	ID               string     `json:"id"`
	Blueprint        string     `json:"blueprint"`
	TargetVersion    int        `json:"target_version"`
	Status           string     `json:"status"` // in_progress | completed | failed
	Concurrency      int        `json:"concurrency"`
	TenantsTotal     int        `json:"tenants_total"`
	TenantsCompleted int        `json:"tenants_completed"`
	TenantsFailed    int        `json:"tenants_failed"`
	CreatedAt        time.Time  `json:"created_at"`
	FinishedAt       *time.Time `json:"finished_at"`
	// Results: every tenant's outcome, [] for a deployment with none;
	// left out of lists.
	Results   *[]DeploymentResult `json:"results,omitempty"`
	RaftIndex uint64              `json:"raft_index,omitempty"`
}

func deploymentView(d *fsm.Deployment, withResults bool) Deployment {
	done, failed := d.Counts()
	out := Deployment{
		ID: d.ID, Blueprint: d.Blueprint, TargetVersion: d.TargetVersion, Status: d.Status,
		Concurrency: d.Concurrency, TenantsTotal: len(d.Results), TenantsCompleted: done, TenantsFailed: failed,
		CreatedAt: d.CreatedAt,
	}
	if d.FinishedAt != nil {
		at := *d.FinishedAt
		out.FinishedAt = &at
	}
	if withResults {
		results := make([]DeploymentResult, 0, len(d.Results))
		for _, r := range d.Results {
			results = append(results, DeploymentResult{
				TenantID: r.Tenant, Status: r.Status, Error: r.Error, DurationMs: r.DurationMs,
				FromVersion: r.FromVersion, Version: r.Version, Attempts: r.Attempts,
			})
		}
		out.Results = &results
	}
	return out
}

// newDeploymentID is a deployment's id: dep_ + 12 hex.
func newDeploymentID() string { return "dep_" + randomHex(6) }

// createDeployment: POST /v1/deployments {blueprint, version?, all: true,
// concurrency?} starts bringing every tenant of the blueprint to the version
// (default: the latest). It answers 202 at once with the deployment; its
// progress is read with GET /v1/deployments/{id}. Needs an admin key whose
// scope (project, or workspace) covers the blueprint.
func (s *server) createDeployment(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("create deployments"); err != nil {
		return err
	}
	var req struct {
		Blueprint   string `json:"blueprint"`
		Version     int    `json:"version"`
		All         bool   `json:"all"`
		Concurrency int    `json:"concurrency"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := fsm.ValidExistingName("blueprint", req.Blueprint); err != nil {
		return err
	}
	if !req.All {
		return badRequest(`deployments go to every tenant of the blueprint: pass "all": true (--all)`)
	}
	if req.Version < 0 {
		return badRequest("version must be positive")
	}
	if req.Concurrency < 0 || req.Concurrency > fsm.MaxDeployConcurrency {
		return badRequest("concurrency must be between 1 and %d", fsm.MaxDeployConcurrency)
	}
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("a tenant-scoped key cannot create deployments")
	}
	if !c.reachesWorkspace(req.Blueprint) {
		return c.workspaceDenied(req.Blueprint)
	}
	cmd := fsm.CreateDeployment{
		ID: newDeploymentID(), ProjectID: c.projectID, Blueprint: req.Blueprint, Version: req.Version,
		Concurrency: req.Concurrency, KeyID: c.keyID, At: s.now(),
	}
	var err error
	s.view(func(st *fsm.State) {
		p := st.Project(c.projectID)
		ws := p.Workspaces[req.Blueprint]
		if ws == nil {
			err = notFound("blueprint %q not found", req.Blueprint)
			return
		}
		if cmd.Version == 0 {
			cmd.Version = ws.LatestVersion()
		}
		for _, t := range p.SortedTenants() {
			// A tenant being deleted (DELETE answered 202, its database
			// not dropped yet) has nothing to deploy: listed, it would
			// fail the deployment.
			if t.Blueprint == req.Blueprint && !st.Deleting(t) {
				cmd.Tenants = append(cmd.Tenants, t.Name)
			}
		}
	})
	if err != nil {
		return err
	}
	index, err := s.apply(r.Context(), fsm.CmdCreateDeployment, cmd)
	if err != nil {
		return err
	}
	out, err := s.readDeployment(c, cmd.ID)
	if err != nil {
		return err
	}
	out.RaftIndex = index
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

// readDeployment copies a deployment the caller may see.
func (s *server) readDeployment(c *caller, id string) (Deployment, error) {
	var out Deployment
	var found bool
	s.view(func(st *fsm.State) {
		if d := st.Deployments[id]; d != nil && d.ProjectID == c.projectID {
			out, found = deploymentView(d, true), true
		}
	})
	if !found {
		return out, notFound("deployment %q not found", id)
	}
	if !c.reachesWorkspace(out.Blueprint) {
		return Deployment{}, c.workspaceDenied(out.Blueprint)
	}
	return out, nil
}

// getDeployment: GET /v1/deployments/{id}, with every tenant's result.
func (s *server) getDeployment(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	out, err := s.readDeployment(c, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listDeployments: GET /v1/deployments[?blueprint=], newest first, within the
// caller's scope; without per-tenant results.
func (s *server) listDeployments(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("credential scoped to tenants %s cannot list deployments", list(c.scopeValues))
	}
	blueprint := r.URL.Query().Get("blueprint")
	out := []Deployment{}
	s.view(func(st *fsm.State) {
		for _, d := range st.SortedDeployments(c.projectID) {
			if (blueprint == "" || d.Blueprint == blueprint) && c.reachesWorkspace(d.Blueprint) {
				out = append(out, deploymentView(d, false))
			}
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}
