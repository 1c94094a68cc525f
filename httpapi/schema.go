package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/cockroachdb/errors"
	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/actors/backend"
	"tdb/blueprint"
	"tdb/fsm"
)

// Schema is a workspace's captured schema: its blueprint versions.
type Schema struct {
	Workspace string    `json:"workspace"`
	Source    string    `json:"source"` // template:NAME or url
	Method    string    `json:"method"` // template, pg_dump or introspection
	DDLCount  int       `json:"ddl_count"`
	Versions  []Version `json:"versions"` // recorded blueprint versions (none in control mode)
	RaftIndex uint64    `json:"raft_index,omitempty"`
}

// workspaceSchema: POST /v1/workspaces/{name}/schema {template} | {from_url}
// runs a built-in template, or the schema of an existing database (only into
// a workspace without blueprint versions yet), in the workspace database as
// its admin role, in one transaction, and records it as the next blueprint
// version (tenant mode). A conflict with objects already there is 409 with
// PostgreSQL's message; the workspace is then unchanged.
func (s *server) workspaceSchema(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("change a workspace's schema"); err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	if !c.reachesWorkspace(name) {
		return c.workspaceDenied(name)
	}
	var req struct {
		Template string `json:"template"`
		FromURL  string `json:"from_url"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if (req.Template == "") == (req.FromURL == "") {
		return badRequest(`send one of "template" (%s) or "from_url"`, strings.Join(blueprint.TemplateNames(), ", "))
	}
	tg, err := s.schemaTarget(c, name)
	if err != nil {
		return err
	}
	out := Schema{Workspace: name, Versions: []Version{}}
	var stmts []string
	if req.Template != "" {
		tpl, ok := blueprint.Templates[req.Template]
		if !ok {
			return badRequest("unknown template %q: choose one of %s", req.Template, strings.Join(blueprint.TemplateNames(), ", "))
		}
		stmts, out.Source, out.Method = tpl.Statements, "template:"+tpl.Name, "template"
	} else {
		if tg.versions > 0 {
			return errf(http.StatusConflict, codeConflict,
				"workspace %q already has %d blueprint versions: a schema is imported from a URL only into a workspace without versions", name, tg.versions)
		}
		stmts, out.Method, err = blueprint.ImportSchema(r.Context(), req.FromURL)
		if err != nil {
			return sourceError(err)
		}
		out.Source = "url"
	}
	out.DDLCount = len(stmts)
	versions, index, qf, err := s.runSchema(r.Context(), c, tg, stmts)
	if err != nil {
		return err
	}
	if qf != nil {
		return writeQueryError(w, qf.status, qf.code, qf.sqlstate, qf.message)
	}
	out.Versions, out.RaftIndex = versions, index
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// schemaTarget is a workspace database that a schema runs in.
type schemaTarget struct {
	workspace, url, db, password, mode string
	versions                           int
	guard                              int // of the workspace's database
}

func (s *server) schemaTarget(c *caller, name string) (schemaTarget, error) {
	var tg schemaTarget
	var err error
	s.view(func(st *fsm.State) {
		ws := st.Project(c.projectID).Workspaces[name]
		switch {
		case ws == nil:
			err = notFound("workspace %q not found", name)
			return
		case ws.DatabaseType != fsm.TypePostgreSQL:
			err = badRequest("workspace %q is %s: schemas are imported into PostgreSQL workspaces", name, ws.DatabaseType)
			return
		}
		d := st.Databases[ws.Database]
		if d == nil || d.Status != fsm.StatusReady {
			err = errf(http.StatusConflict, codeConflict, "workspace %q database is not ready", name)
			return
		}
		b := st.Backends[d.Backend]
		if b == nil {
			err = errf(http.StatusBadGateway, codeBackendError, "backend %s is not registered", d.Backend)
			return
		}
		tg = schemaTarget{workspace: name, url: b.URL, db: d.Name, password: d.Passwords.Admin, mode: ws.Mode, versions: ws.LatestVersion(), guard: d.Guard}
	})
	return tg, err
}

// sourceError maps a failure to read a source database.
func sourceError(err error) error {
	if errors.Is(err, blueprint.ErrBadSource) {
		return badRequest("%v", err)
	}
	return errf(http.StatusBadGateway, codeBackendError, "read the source database: %v", err)
}

// runSchema runs statements in the workspace database as its admin role, in
// one transaction, and records them as the next blueprint version (tenant
// mode). PostgreSQL's refusal comes back as a queryFailure: a duplicate
// object is 409, 42501 is 403, the rest 400.
func (s *server) runSchema(ctx context.Context, c *caller, tg schemaTarget, stmts []string) ([]Version, uint64, *queryFailure, error) {
	versions := []Version{}
	cmd := fsm.AddBlueprintVersion{
		ProjectID: c.projectID, Workspace: tg.workspace, Statements: stmts,
		Checksum: fsm.VersionChecksum(stmts), KeyID: c.keyID, At: s.now(),
	}
	// In tenant mode the version is recorded under the workspace's capture
	// lock, as the proxy's sessions record theirs: DDL a session sends
	// meanwhile (which may depend on these statements) waits for it.
	var record func(string) error
	var recover func() error
	var index uint64
	var recErr, recoverErr error
	if tg.mode == fsm.ModeTenant {
		record = func(captureID string) error {
			cmd.CaptureID = captureID
			index, recErr = s.apply(ctx, fsm.CmdAddBlueprintVersion, cmd)
			return recErr
		}
	}
	if tg.mode == fsm.ModeTenant && tg.guard >= backend.JournalGuard {
		recover = func() error {
			recoverErr = backend.RecoverJournal(ctx, tg.url, tg.db, backend.NewJournalRecorder(s.c.FSM(), c.projectID, tg.workspace, s.now,
				func(cmd *fsm.AddBlueprintVersion) error {
					_, err := s.apply(ctx, fsm.CmdAddBlueprintVersion, cmd)
					return err
				}, func(format string, args ...any) { s.logf("httpapi: "+format, args...) }))
			return recoverErr
		}
	}
	err := blueprint.ApplyRecorded(ctx, tg.url, tg.db, backend.RoleName(tg.db, backend.RoleAdmin), tg.password, stmts, backend.CaptureLockKey, recover, record)
	if recoverErr != nil {
		// The statements did not run: what failed is the journal's read or
		// the leader's commit, not the client's schema (whose PostgreSQL
		// error would otherwise be taken for the schema's own). A session
		// refuses its DDL alike, with 57P03.
		s.logf("httpapi: record the DDL the journal of %s holds: %v", tg.db, recoverErr)
		return nil, 0, nil, errf(http.StatusServiceUnavailable, codeUnavailable,
			"the schema cannot run in workspace %q yet: DDL that committed in it earlier is not recorded as a blueprint version: %v; try again shortly",
			tg.workspace, errors.UnwrapAll(recoverErr))
	}
	if recErr != nil {
		e, _ := toAPIError(recErr)
		return nil, 0, nil, errf(e.Status, e.Code, "the schema committed in the workspace but was not recorded as a blueprint version: %s", e.Message)
	}
	if err != nil {
		var pge *pgconn.PgError
		if !errors.As(err, &pge) {
			return nil, 0, nil, errf(http.StatusBadGateway, codeBackendError, "could not run the schema in the workspace: %v", errors.UnwrapAll(err))
		}
		switch pge.Code {
		case "42P07", "42710", "42P06", "42723": // duplicate table, object, schema, function
			return nil, 0, failure(http.StatusConflict, codeConflict, pge.Code, "%s", pge.Message), nil
		case "42501":
			return nil, 0, failure(http.StatusForbidden, codePermissionDenied, pge.Code, "%s", pge.Message), nil
		}
		return nil, 0, failure(http.StatusBadRequest, "query_error", pge.Code, "%s", pge.Message), nil
	}
	if tg.mode != fsm.ModeTenant {
		return versions, 0, nil, nil
	}
	s.view(func(st *fsm.State) {
		for _, v := range st.Project(c.projectID).Workspaces[tg.workspace].Versions {
			if v.Checksum == cmd.Checksum && v.CreatedAt.Equal(cmd.At) {
				versions = append(versions, Version{Version: v.Version, DDLCount: len(v.Statements),
					Statements: orEmpty(v.Statements), Checksum: v.Checksum, CreatedAt: v.CreatedAt})
			}
		}
	})
	return versions, index, nil, nil
}
