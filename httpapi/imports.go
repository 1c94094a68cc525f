package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"tdb/blueprint"
	"tdb/fsm"
)

// ImportTenant is one tenant's part of an import.
type ImportTenant struct {
	TenantID         string `json:"tenant_id"`
	RoutingValue     string `json:"routing_value"`
	Status           string `json:"status"` // pending | running | done | failed
	Error            string `json:"error"`
	Rows             int64  `json:"rows"`
	DurationMs       int64  `json:"duration_ms"`
	Attempts         int    `json:"attempts"`
	ConnectionString string `json:"connection_string,omitempty"` // only when the tenant was just created
}

// Import is a workspace import (import-full) as the API shows it.
type Import struct {
	ID               string         `json:"id"`
	Workspace        string         `json:"workspace"`
	RoutingField     string         `json:"routing_field"`
	Status           string         `json:"status"` // in_progress | completed | failed
	TenantsTotal     int            `json:"tenants_total"`
	TenantsCompleted int            `json:"tenants_completed"`
	TenantsFailed    int            `json:"tenants_failed"`
	RowsCopied       int64          `json:"rows_copied"`
	Tables           []string       `json:"tables"`
	Lookups          []string       `json:"lookups"`    // copied whole into each tenant: no way to the routing field, referenced by tables copied
	Unrouted         []string       `json:"unrouted"`   // not copied: no routing field and no foreign key to one
	NotCopied        []string       `json:"not_copied"` // rows of routed tables that reach no routing value
	CreatedAt        time.Time      `json:"created_at"`
	FinishedAt       *time.Time     `json:"finished_at"`
	Tenants          []ImportTenant `json:"tenants,omitempty"`
	RaftIndex        uint64         `json:"raft_index,omitempty"`
}

func importView(im *fsm.Import, withTenants bool) Import {
	done, failed := im.Counts()
	out := Import{
		ID: im.ID, Workspace: im.Workspace, RoutingField: im.RoutingField, Status: im.Status,
		TenantsTotal: len(im.Tenants), TenantsCompleted: done, TenantsFailed: failed,
		Tables: []string{}, Unrouted: orEmpty(im.Unrouted), NotCopied: orEmpty(im.NotCopied), CreatedAt: im.CreatedAt,
	}
	if im.FinishedAt != nil {
		at := *im.FinishedAt
		out.FinishedAt = &at
	}
	out.Lookups = []string{}
	for _, t := range im.Tables {
		if t.Whole {
			out.Lookups = append(out.Lookups, t.Name)
		}
		out.Tables = append(out.Tables, t.Name)
	}
	for _, t := range im.Tenants {
		out.RowsCopied += t.Rows
		if withTenants {
			out.Tenants = append(out.Tenants, ImportTenant{
				TenantID: t.Tenant, RoutingValue: t.Value, Status: t.Status, Error: t.Error,
				Rows: t.Rows, DurationMs: t.DurationMs, Attempts: t.Attempts,
			})
		}
	}
	if withTenants && out.Tenants == nil {
		out.Tenants = []ImportTenant{}
	}
	return out
}

// importFull: POST /v1/workspaces/{name}/import-full {from_url,
// routing_field, concurrency?} analyses the source database, takes its schema
// as the workspace's first blueprint version, creates a tenant per distinct
// routing value (named from the value) and starts copying each tenant's rows
// (202). Tables without the routing field follow their foreign keys; those
// that cannot are lookup tables, copied whole into each tenant, when tables
// copied reference them, and else are listed as unrouted and not copied.
// New tenants' connection strings are in this response only.
//
// Rerunning it is safe: with an import in progress it answers that import
// (200); after a failed import it retries the failed tenants (202); the
// schema and tenants already made by an interrupted request are reused.
func (s *server) importFull(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("import into a workspace"); err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	if !c.reachesWorkspace(name) {
		return c.workspaceDenied(name)
	}
	var req struct {
		FromURL      string `json:"from_url"`
		RoutingField string `json:"routing_field"`
		Concurrency  int    `json:"concurrency"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.FromURL == "" || req.RoutingField == "" {
		return badRequest(`send "from_url" and "routing_field"`)
	}
	if strings.ContainsRune(req.RoutingField, 0) {
		return badRequest("routing_field %q names no column: a column name has no NUL character", req.RoutingField)
	}
	if req.Concurrency < 0 || req.Concurrency > fsm.MaxDeployConcurrency {
		return badRequest("concurrency must be between 1 and %d", fsm.MaxDeployConcurrency)
	}
	tg, err := s.schemaTarget(c, name)
	if err != nil {
		return err
	}
	if tg.mode != fsm.ModeTenant {
		return badRequest("workspace %q is in %s mode: import-full splits rows into tenants of a tenant-mode workspace", name, tg.mode)
	}

	// An import of this workspace already recorded: answer or retry it.
	var prev *Import
	var prevSource, prevField string
	s.view(func(st *fsm.State) {
		if im := st.ImportOf(c.projectID, name); im != nil {
			v := importView(im, true)
			prev, prevSource, prevField = &v, im.SourceURL, im.RoutingField
		}
	})
	if prev != nil {
		if prevSource != req.FromURL || prevField != req.RoutingField {
			return errf(http.StatusConflict, codeConflict, "workspace %q was imported into already (import %s, from another source or routing field)", name, prev.ID)
		}
		switch prev.Status {
		case fsm.DeploymentCompleted:
			return errf(http.StatusConflict, codeConflict, "import %s into workspace %q is completed already", prev.ID, name)
		case fsm.DeploymentFailed:
			index, err := s.apply(r.Context(), fsm.CmdRetryImport, fsm.RetryImport{ID: prev.ID, At: s.now()})
			if err != nil {
				return err
			}
			out, err := s.readImport(c, prev.ID)
			if err != nil {
				return err
			}
			out.RaftIndex = index
			writeJSON(w, http.StatusAccepted, out)
			return nil
		}
		writeJSON(w, http.StatusOK, prev)
		return nil
	}

	plan, err := blueprint.Analyse(r.Context(), req.FromURL, req.RoutingField)
	if err != nil {
		return sourceError(err)
	}
	if len(plan.Values) == 0 {
		return badRequest("no row of the source has a value in %q: nothing to split into tenants", req.RoutingField)
	}
	if lookups := plan.Lookups(); len(lookups) > 0 {
		var active uint16
		s.view(func(st *fsm.State) { active = st.ActiveLogVersion() })
		if active < 3 {
			// A build before it would not know to copy them whole.
			return errf(http.StatusServiceUnavailable, codeUnavailable, "the source's lookup tables (%s) are copied whole into each tenant, which needs cluster log version 3, and the cluster runs %d: some node runs an older build; upgrade every node first",
				strings.Join(lookups, ", "), active)
		}
	}
	stmts, _, err := blueprint.ImportSchema(r.Context(), req.FromURL)
	if err != nil {
		return sourceError(err)
	}
	if qf, err := s.importSchema(r, c, tg, stmts); err != nil || qf != nil {
		if qf != nil {
			return writeQueryError(w, qf.status, qf.code, qf.sqlstate, qf.message)
		}
		return err
	}

	// A tenant of this workspace with a planned name is an earlier try of
	// this import; one of another blueprint keeps its name.
	var otherTenants map[string]bool
	s.view(func(st *fsm.State) {
		otherTenants = map[string]bool{}
		for n, t := range st.Project(c.projectID).Tenants {
			if t.Blueprint != name {
				otherTenants[n] = true
			}
		}
	})
	specs := blueprint.TenantNames(plan.Values, func(n string) bool { return otherTenants[n] })
	conns, err := s.createImportTenants(r, c, name, specs)
	if err != nil {
		return err
	}
	cmd := fsm.CreateImport{
		ID: "imp_" + randomHex(6), ProjectID: c.projectID, Workspace: name, SourceURL: req.FromURL,
		RoutingField: req.RoutingField, Concurrency: req.Concurrency, Tables: plan.Tables, Unrouted: plan.Unrouted,
		NotCopied: plan.NotCopied,
		Tenants:   specs, KeyID: c.keyID, At: s.now(),
	}
	index, err := s.apply(r.Context(), fsm.CmdCreateImport, cmd)
	if err != nil {
		return err
	}
	out, err := s.readImport(c, cmd.ID)
	if err != nil {
		return err
	}
	for i := range out.Tenants {
		out.Tenants[i].ConnectionString = conns[out.Tenants[i].TenantID]
	}
	out.RaftIndex = index
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

// importSchema makes the source's schema the workspace's first blueprint
// version, unless an interrupted earlier request did exactly that already. A
// PostgreSQL refusal comes back as a queryFailure.
func (s *server) importSchema(r *http.Request, c *caller, tg schemaTarget, stmts []string) (*queryFailure, error) {
	if tg.versions > 0 {
		same := false
		s.view(func(st *fsm.State) {
			vs := st.Project(c.projectID).Workspaces[tg.workspace].Versions
			same = len(vs) == 1 && vs[0].Checksum == fsm.VersionChecksum(stmts)
		})
		if !same {
			return nil, errf(http.StatusConflict, codeConflict,
				"workspace %q already has %d blueprint versions: import-full needs a workspace without versions", tg.workspace, tg.versions)
		}
		return nil, nil
	}
	_, _, qf, err := s.runSchema(r.Context(), c, tg, stmts)
	return qf, err
}

// createImportTenants creates the tenants an import needs, skipping those
// that exist already (from an interrupted request), and returns the new
// ones' connection strings. Their databases are provisioned in the
// background; the importer waits for them.
func (s *server) createImportTenants(r *http.Request, c *caller, workspace string, specs []fsm.ImportTenantSpec) (map[string]string, error) {
	conns := map[string]string{}
	for _, sp := range specs {
		if err := fsm.ValidateName("tenant", sp.Tenant); err != nil {
			return nil, err
		}
		cmd := fsm.CreateTenant{ProjectID: c.projectID, Name: sp.Tenant, Blueprint: workspace, At: s.now()}
		var salt []byte
		var iterations int
		var exists bool
		var err error
		s.view(func(st *fsm.State) {
			p := st.Project(c.projectID)
			if t := p.Tenants[sp.Tenant]; t != nil {
				exists = true
				if t.Blueprint != workspace {
					err = errf(http.StatusConflict, codeConflict, "tenant %q (for routing value %q) exists already, in blueprint %q", sp.Tenant, sp.Value, t.Blueprint)
				}
				return
			}
			cmd.Database, err = placeDatabase(st)
			salt, iterations = append([]byte(nil), p.Salt...), p.Iterations
		})
		if err != nil {
			return nil, err
		}
		if exists {
			continue
		}
		secret := newProxyPassword()
		cmd.Key = newKey(secret, "proxy_password", fsm.RoleAdmin, fsm.ScopeTenant, []string{sp.Tenant}, salt, iterations)
		if _, err := s.apply(r.Context(), fsm.CmdCreateTenant, cmd); err != nil {
			return nil, err
		}
		db := fsm.TenantDatabase(workspace, sp.Tenant)
		conns[sp.Tenant] = fmt.Sprintf("postgresql://%s:%s@%s/%s?sslmode=require", c.projectID, secret, s.c.WireAddr(), db)
	}
	return conns, nil
}

// readImport copies an import the caller may see.
func (s *server) readImport(c *caller, id string) (Import, error) {
	var out Import
	var found bool
	s.view(func(st *fsm.State) {
		if im := st.Imports[id]; im != nil && im.ProjectID == c.projectID {
			out, found = importView(im, true), true
		}
	})
	if !found {
		return out, notFound("import %q not found", id)
	}
	if !c.reachesWorkspace(out.Workspace) {
		return Import{}, c.workspaceDenied(out.Workspace)
	}
	return out, nil
}

// getImport: GET /v1/imports/{id}, with every tenant's progress.
func (s *server) getImport(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	out, err := s.readImport(c, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listImports: GET /v1/imports, newest first, within the caller's scope;
// without per-tenant progress.
func (s *server) listImports(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("credential scoped to tenants %s cannot list imports", list(c.scopeValues))
	}
	out := []Import{}
	s.view(func(st *fsm.State) {
		for _, im := range st.Imports {
			if im.ProjectID == c.projectID && c.reachesWorkspace(im.Workspace) {
				out = append(out, importView(im, false))
			}
		}
	})
	sortBy(out, func(v Import) string { return v.CreatedAt.Format(time.RFC3339Nano) + v.ID })
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
