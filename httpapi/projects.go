package httpapi

import (
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"tdb/fsm"
)

// maxLabel bounds free-text names (projects, keys).
const maxLabel = 100

type projectJSON struct {
	ProjectID  string    `json:"project_id"`
	Name       string    `json:"name"`
	Workspaces int       `json:"workspaces"`
	Tenants    int       `json:"tenants"`
	CreatedAt  time.Time `json:"created_at"`
}

type createProjectResponse struct {
	ProjectID     string `json:"project_id"`
	Name          string `json:"name"`
	ProxyPassword string `json:"proxy_password"`
	RaftIndex     uint64 `json:"raft_index"`
}

// createProject: POST /v1/projects {name}, operator only. The proxy_password
// becomes the project's admin key; it is shown only in this response.
func (s *server) createProject(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("create projects"); err != nil {
		return err
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || utf8.RuneCountInString(req.Name) > maxLabel {
		return badRequest("project name is required (at most %d characters)", maxLabel)
	}
	if err := checkLabel("project name", req.Name); err != nil {
		return err
	}
	secret := newProxyPassword()
	cmd := fsm.CreateProject{
		ID: newProjectID(), Name: req.Name, Salt: newSalt(), Iterations: scramIterations, At: s.now(),
	}
	cmd.ProxyKey = newKey(secret, "proxy_password", fsm.RoleAdmin, fsm.ScopeProject, nil, cmd.Salt, cmd.Iterations)
	index, err := s.apply(r.Context(), fsm.CmdCreateProject, cmd)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, createProjectResponse{
		ProjectID: cmd.ID, Name: cmd.Name, ProxyPassword: secret, RaftIndex: index,
	})
	return nil
}

// listProjects: GET /v1/projects, operator only.
func (s *server) listProjects(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("list projects"); err != nil {
		return err
	}
	out := []projectJSON{}
	s.view(func(st *fsm.State) {
		for _, p := range st.Projects {
			out = append(out, projectJSON{
				ProjectID: p.ID, Name: p.Name, Workspaces: len(p.Workspaces), Tenants: len(p.Tenants), CreatedAt: p.CreatedAt,
			})
		}
	})
	sortBy(out, func(p projectJSON) string { return p.Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}
