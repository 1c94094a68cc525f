package httpapi

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/gorilla/mux"

	"tdb/fsm"
)

// server holds the control plane's dependencies and timing knobs.
type server struct {
	c    Cluster
	logf func(string, ...any)
	now  func() time.Time

	// applyTimeout bounds committing one command and the local replica
	// catching up with it.
	applyTimeout time.Duration
	// provisionTimeout bounds waiting for a new tenant's database.
	provisionTimeout time.Duration
}

// New returns the control plane's HTTP handler over a cluster node. logf
// receives internal errors.
func New(c Cluster, logf func(string, ...any)) http.Handler {
	return newServer(c, logf).routes()
}

func newServer(c Cluster, logf func(string, ...any)) *server {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &server{
		c: c, logf: logf, now: func() time.Time { return time.Now().UTC() },
		applyTimeout: 30 * time.Second, provisionTimeout: 120 * time.Second,
	}
}

func (s *server) routes() http.Handler {
	// SkipClean: a path with "." or ".." segments, or a name with an escaped
	// slash, is not redirected to another resource; it matches no route.
	r := mux.NewRouter().SkipClean(true)
	// The path is shown escaped, as sent: decoded, %1b would reach the
	// terminal printing the message as an escape code.
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, notFound("no route %s %s", r.Method, r.URL.EscapedPath()))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed,
			errf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.EscapedPath()))
	})
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet)

	// Full paths on one router: gorilla/mux subrouters answer a method
	// mismatch with 404 instead of 405.
	for _, rt := range []struct {
		method, path string
		h            handler
	}{
		{http.MethodPost, "/projects", s.createProject},
		{http.MethodGet, "/projects", s.listProjects},

		{http.MethodPost, "/workspaces", s.createWorkspace},
		{http.MethodGet, "/workspaces", s.listWorkspaces},
		{http.MethodGet, "/workspaces/{name}", s.getWorkspace},
		{http.MethodGet, "/workspaces/{name}/settings", s.getWorkspaceSettings},
		{http.MethodPatch, "/workspaces/{name}/settings", s.updateWorkspaceSettings},
		{http.MethodPost, "/workspaces/{name}/schema", s.workspaceSchema},
		{http.MethodPost, "/workspaces/{name}/import-full", s.importFull},
		{http.MethodGet, "/imports", s.listImports},
		{http.MethodGet, "/imports/{id}", s.getImport},
		{http.MethodGet, "/blueprints/{name}/versions", s.listBlueprintVersions},
		{http.MethodPost, "/deployments", s.createDeployment},
		{http.MethodGet, "/deployments", s.listDeployments},
		{http.MethodGet, "/deployments/{id}", s.getDeployment},

		{http.MethodPost, "/tenants", s.createTenant},
		{http.MethodGet, "/tenants", s.listTenants},
		{http.MethodGet, "/tenants/{id}", s.getTenant},
		{http.MethodDelete, "/tenants/{id}", s.deleteTenant},
		{http.MethodPost, "/tenants/{id}/query", s.queryTenant},

		{http.MethodPost, "/apikeys", s.createKey},
		{http.MethodGet, "/apikeys", s.listKeys},
		{http.MethodDelete, "/apikeys/{id}", s.revokeKey},

		{http.MethodPost, "/backends", s.addBackend},
		{http.MethodGet, "/backends", s.listBackends},
		{http.MethodDelete, "/backends/{name}", s.removeBackend},

		{http.MethodGet, "/cluster/status", s.clusterStatus},
		{http.MethodGet, "/cluster/settings", s.getClusterSettings},
		{http.MethodPatch, "/cluster/settings", s.updateClusterSettings},
		{http.MethodGet, "/cluster/backup", s.getClusterBackup},

		{http.MethodGet, "/logs", s.listLogs},
	} {
		r.Handle("/v1"+rt.path, s.authed(rt.h)).Methods(rt.method)
	}
	// The product documentation names the query endpoint without the version.
	r.Handle("/tenants/{id}/query", s.authed(s.queryTenant)).Methods(http.MethodPost)
	return r
}

// handler serves an authenticated request; a returned error becomes the JSON
// error response.
type handler func(w http.ResponseWriter, r *http.Request, c *caller) error

func (s *server) authed(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guard, _ := s.c.(AuthGuard)
		ip := s.clientIP(r)
		if guard != nil {
			if left, msg, banned := guard.Banned(ip); banned {
				w.Header().Set("Retry-After", strconv.FormatInt(left, 10))
				s.writeError(w, r, errf(http.StatusTooManyRequests, codeRateLimited, "%s", msg))
				return
			}
		}
		c, err := s.authenticate(r)
		if err != nil && guard != nil && wrongKey(err) {
			guard.AuthFailed(ip)
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// clientIP is the request's client address: as the cluster tells it
// (behind a trusted load balancer, the one it names), else the peer's.
func (s *server) clientIP(r *http.Request) string {
	if guard, ok := s.c.(AuthGuard); ok {
		return guard.ClientIP(r)
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ip
}

// wrongKey reports whether an authentication failed on the key itself (an
// unknown or revoked one), which counts toward the IP's ban; a request with
// no key does not.
func wrongKey(err error) bool {
	e, _ := toAPIError(err)
	return e.Status == http.StatusUnauthorized && !strings.HasPrefix(e.Message, "missing API key")
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := toAPIError(err)
	if internal {
		s.logf("httpapi: %s %s: %+v", r.Method, r.URL.Path, err)
	}
	writeJSON(w, e.Status, e)
}

// view runs fn over the local replica's state; fn copies what it keeps.
func (s *server) view(fn func(st *fsm.State)) { s.c.FSM().View(fn) }

// apply commits a command and waits until the local replica has applied it, so
// that the handler can read its own write. It returns the raft index.
func (s *server) apply(ctx context.Context, t fsm.CommandType, payload any) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.applyTimeout)
	defer cancel()
	_, index, err := s.c.Apply(ctx, t, payload)
	if err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			return 0, fe
		}
		s.logf("httpapi: apply %s: %v", t, err)
		if errors.Is(err, ErrOutcomeUnknown) {
			return 0, errf(http.StatusServiceUnavailable, codeUnavailable,
				"the raft leader changed while committing %s: it may have been applied; check before retrying", t)
		}
		if errors.Is(err, ErrNotLeader) {
			return 0, errf(http.StatusServiceUnavailable, codeNotLeader, "could not reach the raft leader to commit %s; retry", t)
		}
		return 0, errf(http.StatusServiceUnavailable, codeUnavailable, "could not commit %s: %v", t, err)
	}
	if err := s.c.FSM().WaitIndex(ctx, index); err != nil {
		return 0, errf(http.StatusServiceUnavailable, codeUnavailable,
			"committed %s at raft index %d but this node has not applied it yet", t, index)
	}
	return index, nil
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	var id string
	var err error
	if h, ok := s.c.(Healther); ok {
		id, err = h.Health()
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var st ClusterStatus
		st, err = s.c.Status(ctx)
		id = st.NodeID
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "node_id": id})
}
