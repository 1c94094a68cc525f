package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/gorilla/mux"

	"tdb/fsm"
)

// Tenant is a tenant as the API shows it.
type Tenant struct {
	TenantID  string `json:"tenant_id"`
	Blueprint string `json:"blueprint"`
	Database  string `json:"database"` // wire name: myapp__wayne
	// PhysicalDatabase is the database's name on its backend server (what
	// current_database() says in a session): how an operator finds it there.
	PhysicalDatabase string    `json:"physical_database"`
	Status           string    `json:"status"`
	Error            string    `json:"error"`
	SchemaVersion    int       `json:"schema_version"`
	CreatedAt        time.Time `json:"created_at"`
	RaftIndex        uint64    `json:"raft_index,omitempty"`
}

func tenantView(st *fsm.State, t *fsm.Tenant) Tenant {
	out := Tenant{
		TenantID: t.Name, Blueprint: t.Blueprint, Database: fsm.TenantDatabase(t.Blueprint, t.Name),
		PhysicalDatabase: t.Database,
		CreatedAt:        t.CreatedAt, Status: fsm.StatusDeleting,
	}
	if d := st.Databases[t.Database]; d != nil {
		out.Status, out.Error, out.SchemaVersion = d.Status, d.Error, d.SchemaVersion
	}
	return out
}

type createTenantResponse struct {
	TenantID         string `json:"tenant_id"`
	Blueprint        string `json:"blueprint"`
	Database         string `json:"database"`
	Status           string `json:"status"`
	ConnectionString string `json:"connection_string"`
	RaftIndex        uint64 `json:"raft_index"`
}

// createTenant: POST /v1/tenants {name, blueprint}. It answers once the
// tenant's physical database is ready (201), has failed (502 backend_error; the
// tenant stays, listed as failed), or after provisionTimeout (504). The tenant
// key (a fresh proxy_password, role admin, scope the tenant) is returned only
// inside connection_string.
func (s *server) createTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("create tenants"); err != nil {
		return err
	}
	var req struct {
		Name      string `json:"name"`
		Blueprint string `json:"blueprint"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := fsm.ValidateName("tenant", req.Name); err != nil {
		return err
	}
	if err := fsm.ValidExistingName("blueprint", req.Blueprint); err != nil {
		return err
	}
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("a tenant-scoped key cannot create tenants")
	}
	if !c.reachesTenant(req.Name, req.Blueprint) {
		return c.tenantDenied(req.Name, req.Blueprint)
	}
	cmd := fsm.CreateTenant{ProjectID: c.projectID, Name: req.Name, Blueprint: req.Blueprint, At: s.now()}
	var salt []byte
	var iterations int
	var err error
	s.view(func(st *fsm.State) {
		p := st.Project(c.projectID)
		if p.Workspaces[req.Blueprint] == nil {
			err = notFound("blueprint %q not found", req.Blueprint)
			return
		}
		if p.Tenants[req.Name] != nil {
			err = errf(http.StatusConflict, codeConflict, "tenant %q already exists", req.Name)
			return
		}
		cmd.Database, err = placeDatabase(st)
		salt, iterations = append([]byte(nil), p.Salt...), p.Iterations
	})
	if err != nil {
		return err
	}
	secret := newProxyPassword()
	cmd.Key = newKey(secret, "proxy_password", fsm.RoleAdmin, fsm.ScopeTenant, []string{req.Name}, salt, iterations)
	index, err := s.apply(r.Context(), fsm.CmdCreateTenant, cmd)
	if err != nil {
		return err
	}
	d, err := s.waitProvisioned(r.Context(), cmd.Database.Name)
	if err != nil {
		return err
	}
	switch d.Status {
	case fsm.StatusReady:
	case fsm.StatusFailed:
		return errf(http.StatusBadGateway, codeBackendError, "%s", d.Error)
	default:
		return errf(http.StatusConflict, codeConflict, "tenant %q was deleted while its database was being provisioned", req.Name)
	}
	db := fsm.TenantDatabase(req.Blueprint, req.Name)
	writeJSON(w, http.StatusCreated, createTenantResponse{
		TenantID: req.Name, Blueprint: req.Blueprint, Database: db, Status: d.Status,
		ConnectionString: fmt.Sprintf("postgresql://%s:%s@%s/%s?sslmode=require", c.projectID, secret, s.c.WireAddr(), db),
		RaftIndex:        index,
	})
	return nil
}

// waitProvisioned waits until a physical database leaves provisioning and
// returns a copy of it; a database that vanished comes back with status
// deleting.
func (s *server) waitProvisioned(ctx context.Context, name string) (fsm.Database, error) {
	wctx, cancel := context.WithTimeout(ctx, s.provisionTimeout)
	defer cancel()
	var out fsm.Database
	err := s.c.FSM().WaitFor(wctx, func(st *fsm.State) bool {
		d := st.Databases[name]
		if d == nil {
			out = fsm.Database{Name: name, Status: fsm.StatusDeleting}
			return true
		}
		out = *d
		return d.Status != fsm.StatusProvisioning
	})
	switch {
	case err == nil:
		return out, nil
	case ctx.Err() != nil:
		// The client went away; nobody reads this.
		return out, errf(http.StatusServiceUnavailable, codeUnavailable, "request cancelled while waiting for provisioning")
	default:
		return out, errf(http.StatusGatewayTimeout, codeTimeout,
			"created, but its database is still provisioning after %s; check its status with `tdb tenants get` or `tdb workspaces get`", s.provisionTimeout)
	}
}

// listTenants: GET /v1/tenants[?blueprint=], the tenants within the caller's
// scope.
func (s *server) listTenants(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	blueprint := r.URL.Query().Get("blueprint")
	out := []Tenant{}
	s.view(func(st *fsm.State) {
		for _, t := range st.Project(c.projectID).SortedTenants() {
			if (blueprint == "" || t.Blueprint == blueprint) && c.reachesTenant(t.Name, t.Blueprint) {
				out = append(out, tenantView(st, t))
			}
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

// readTenant copies a tenant the caller may see.
func (s *server) readTenant(c *caller, name string) (Tenant, error) {
	if c.scopeType == fsm.ScopeTenant && !c.reachesTenant(name, "") {
		return Tenant{}, c.tenantDenied(name, "")
	}
	var out Tenant
	var found bool
	s.view(func(st *fsm.State) {
		if t := st.Project(c.projectID).Tenants[name]; t != nil {
			out, found = tenantView(st, t), true
		}
	})
	if !found {
		return out, notFound("tenant %q not found", name)
	}
	if !c.reachesTenant(out.TenantID, out.Blueprint) {
		return Tenant{}, c.tenantDenied(out.TenantID, out.Blueprint)
	}
	return out, nil
}

// getTenant: GET /v1/tenants/{id}.
func (s *server) getTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	out, err := s.readTenant(c, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteTenant: DELETE /v1/tenants/{id} marks the tenant deleting (202); the
// reconciler drops its database. Keys scoped only to it are revoked at once.
// Tenant-scoped keys cannot delete tenants.
func (s *server) deleteTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	if err := c.requireAdmin("delete tenants"); err != nil {
		return err
	}
	name := mux.Vars(r)["id"]
	if _, err := s.readTenant(c, name); err != nil {
		return err
	}
	if c.scopeType == fsm.ScopeTenant {
		return scopeDenied("a tenant-scoped key cannot delete tenants")
	}
	index, err := s.apply(r.Context(), fsm.CmdDeleteTenant, fsm.DeleteTenant{ProjectID: c.projectID, Name: name, At: s.now()})
	if err != nil {
		return err
	}
	out, err := s.readTenant(c, name)
	if err != nil {
		var e *apiError
		if !errors.As(err, &e) || e.Code != codeNotFound {
			return err
		}
		// Already dropped and forgotten by the reconciler.
		out = Tenant{TenantID: name, Status: fsm.StatusDeleting}
	}
	out.RaftIndex = index
	writeJSON(w, http.StatusAccepted, out)
	return nil
}
