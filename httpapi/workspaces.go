package httpapi

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"tdb/fsm"
)

// Workspace is a workspace as the API shows it.
type Workspace struct {
	Name         string `json:"name"`
	Mode         string `json:"mode"`
	DatabaseType string `json:"database_type"`
	Database     string `json:"database"` // wire name: myapp_workspace; empty for non-PostgreSQL
	// PhysicalDatabase is the database's name on its backend server (what
	// current_database() says in a session): how an operator finds it there.
	PhysicalDatabase string                `json:"physical_database,omitempty"`
	Status           string                `json:"status"`
	Error            string                `json:"error,omitempty"`
	Settings         fsm.WorkspaceSettings `json:"settings"`
	LatestVersion    int                   `json:"latest_version"`
	CreatedAt        time.Time             `json:"created_at"`
	RaftIndex        uint64                `json:"raft_index,omitempty"`
}

func workspaceView(st *fsm.State, w *fsm.Workspace) Workspace {
	out := Workspace{
		Name: w.Name, Mode: w.Mode, DatabaseType: w.DatabaseType, Settings: w.Settings,
		LatestVersion: w.LatestVersion(), CreatedAt: w.CreatedAt, Status: fsm.StatusReady,
	}
	if w.Database != "" {
		out.Database, out.PhysicalDatabase = fsm.WorkspaceDatabase(w.Name), w.Database
		if d := st.Databases[w.Database]; d != nil {
			out.Status, out.Error = d.Status, d.Error
		}
	}
	return out
}

// createWorkspace: POST /v1/workspaces {name, mode, database}. Needs a
// project-scoped admin key. A PostgreSQL workspace gets a physical database;
// like tenants, the response waits until it is provisioned (or failed).
func (s *server) createWorkspace(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("create workspaces"); err != nil {
		return err
	}
	if c.scopeType != fsm.ScopeProject {
		return scopeDenied("a %s-scoped key cannot create workspaces: that needs a project-scoped key", c.scopeType)
	}
	var req struct {
		Name     string `json:"name"`
		Mode     string `json:"mode"`
		Database string `json:"database"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Mode == "" {
		req.Mode = fsm.ModeTenant
	}
	if req.Database == "" {
		req.Database = fsm.TypePostgreSQL
	}
	if err := fsm.ValidateName("workspace", req.Name); err != nil {
		return err
	}
	switch req.Mode {
	case fsm.ModeTenant, fsm.ModeControl:
	default:
		return badRequest("invalid mode %q: must be tenant or control", req.Mode)
	}
	switch req.Database {
	case fsm.TypePostgreSQL, fsm.TypeMySQL, fsm.TypeMongoDB, fsm.TypeRedis:
	default:
		return badRequest("invalid database %q: must be postgresql, mysql, mongodb or redis", req.Database)
	}
	cmd := fsm.CreateWorkspace{
		ProjectID: c.projectID, Name: req.Name, Mode: req.Mode, DatabaseType: req.Database, At: s.now(),
	}
	if req.Database == fsm.TypePostgreSQL {
		var err error
		s.view(func(st *fsm.State) {
			var nd fsm.NewDatabase
			nd, err = placeDatabase(st)
			cmd.Database = &nd
		})
		if err != nil {
			return err
		}
	}
	index, err := s.apply(r.Context(), fsm.CmdCreateWorkspace, cmd)
	if err != nil {
		return err
	}
	if cmd.Database != nil {
		d, err := s.waitProvisioned(r.Context(), cmd.Database.Name)
		if err != nil {
			return err
		}
		if d.Status == fsm.StatusFailed {
			return errf(http.StatusBadGateway, codeBackendError, "%s", d.Error)
		}
	}
	out, err := s.readWorkspace(c, req.Name)
	if err != nil {
		return err
	}
	out.RaftIndex = index
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// readWorkspace copies a workspace the caller may see.
func (s *server) readWorkspace(c *caller, name string) (Workspace, error) {
	if !c.reachesWorkspace(name) {
		return Workspace{}, c.workspaceDenied(name)
	}
	var out Workspace
	var found bool
	s.view(func(st *fsm.State) {
		if w := st.Project(c.projectID).Workspaces[name]; w != nil {
			out, found = workspaceView(st, w), true
		}
	})
	if !found {
		return out, notFound("workspace %q not found", name)
	}
	return out, nil
}

// listWorkspaces: GET /v1/workspaces, the workspaces within the caller's scope.
func (s *server) listWorkspaces(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("credential scoped to tenants %s cannot list workspaces", list(c.scopeValues))
	}
	out := []Workspace{}
	s.view(func(st *fsm.State) {
		for _, ws := range st.Project(c.projectID).SortedWorkspaces() {
			if c.reachesWorkspace(ws.Name) {
				out = append(out, workspaceView(st, ws))
			}
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getWorkspace: GET /v1/workspaces/{name}.
func (s *server) getWorkspace(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	out, err := s.readWorkspace(c, mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// WorkspaceSettings is the body of GET and PATCH /v1/workspaces/{name}/settings.
type WorkspaceSettings struct {
	Workspace string `json:"workspace"`
	fsm.WorkspaceSettings
	RaftIndex uint64 `json:"raft_index,omitempty"`
}

// getWorkspaceSettings: GET /v1/workspaces/{name}/settings.
func (s *server) getWorkspaceSettings(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	ws, err := s.readWorkspace(c, mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, WorkspaceSettings{Workspace: ws.Name, WorkspaceSettings: ws.Settings})
	return nil
}

// updateWorkspaceSettings: PATCH /v1/workspaces/{name}/settings; absent
// fields stay unchanged. A body that sets no field changes nothing and
// commits nothing: it answers the settings as they are, as GET does.
func (s *server) updateWorkspaceSettings(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("change workspace settings"); err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	if !c.reachesWorkspace(name) {
		return c.workspaceDenied(name)
	}
	var req struct {
		MaxRowsPerQuery *int64 `json:"max_rows_per_query"`
		QueryTimeoutMs  *int64 `json:"query_timeout_ms"`
		MaxConnections  *int64 `json:"max_connections"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.MaxRowsPerQuery == nil && req.QueryTimeoutMs == nil && req.MaxConnections == nil {
		return s.getWorkspaceSettings(w, r, c)
	}
	cmd := fsm.UpdateWorkspaceSettings{
		ProjectID: c.projectID, Name: name,
		MaxRowsPerQuery: req.MaxRowsPerQuery, QueryTimeoutMs: req.QueryTimeoutMs, MaxConnections: req.MaxConnections,
	}
	if err := fsm.CheckWorkspaceSettings(&cmd); err != nil {
		return err
	}
	index, err := s.apply(r.Context(), fsm.CmdUpdateWorkspaceSettings, cmd)
	if err != nil {
		return err
	}
	ws, err := s.readWorkspace(c, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, WorkspaceSettings{Workspace: name, WorkspaceSettings: ws.Settings, RaftIndex: index})
	return nil
}

// Version is one blueprint version.
type Version struct {
	Version    int       `json:"version"`
	DDLCount   int       `json:"ddl_count"`
	Statements []string  `json:"statements"`
	Checksum   string    `json:"checksum"`
	CreatedAt  time.Time `json:"created_at"`
	// Settings: the session settings a captured version runs with on
	// tenants (absent: the backend's defaults).
	Settings *fsm.SessionSettings `json:"settings,omitempty"`
}

// listBlueprintVersions: GET /v1/blueprints/{name}/versions, oldest first.
func (s *server) listBlueprintVersions(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	if !c.reachesWorkspace(name) {
		return c.workspaceDenied(name)
	}
	var out []Version
	s.view(func(st *fsm.State) {
		ws := st.Project(c.projectID).Workspaces[name]
		if ws == nil {
			return
		}
		out = []Version{}
		for _, v := range ws.Versions {
			out = append(out, Version{
				Version: v.Version, DDLCount: len(v.Statements), Statements: orEmpty(v.Statements),
				Checksum: v.Checksum, CreatedAt: v.CreatedAt, Settings: v.Settings,
			})
		}
	})
	if out == nil {
		return notFound("blueprint %q not found", name)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
