package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"tdb/blueprint"
	"tdb/fsm"
)

// Backend is a backend PostgreSQL server as the API shows it (password redacted).
type Backend struct {
	Name      string    `json:"name"`
	URL       string    `json:"url"` // password redacted
	Databases int       `json:"databases"`
	CreatedAt time.Time `json:"created_at"`
	RaftIndex uint64    `json:"raft_index,omitempty"`
}

// addBackend: POST /v1/backends {name, url}, operator only. The URL must be a
// postgres:// (or postgresql://) URL with a host, or with a host= query
// parameter naming a Unix socket directory (a PostgreSQL on the node's own
// machine).
func (s *server) addBackend(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("register backends"); err != nil {
		return err
	}
	var req struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := fsm.ValidateName("backend", req.Name); err != nil {
		return err
	}
	if !validBackendURL(req.URL) {
		return badRequest("invalid backend url: must look like postgres://superuser:password@host:port/postgres (or postgres://superuser:password@/postgres?host=/socket/dir&port=5432 for a Unix socket)")
	}
	if chk, ok := s.c.(BackendChecker); ok {
		if err := chk.CheckBackend(r.Context(), req.URL); err != nil {
			return errf(http.StatusUnprocessableEntity, codeBackendError,
				"backend %s cannot be registered: %s", req.Name, redactErr(err.Error(), req.URL))
		}
	}
	index, err := s.apply(r.Context(), fsm.CmdAddBackend, fsm.AddBackend{Name: req.Name, URL: req.URL, At: s.now()})
	if err != nil {
		return err
	}
	var out Backend
	s.view(func(st *fsm.State) { out = backendView(st, st.Backends[req.Name]) })
	out.RaftIndex = index
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// validBackendURL: a postgres:// URL naming one server, by host[:port] or by
// a host= Unix socket directory, with a numeric port if any. Several hosts
// (a comma) are refused: the node dials one server per backend and sends
// cancels to it.
func validBackendURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return false
	}
	q := u.Query()
	host := q.Get("host")
	switch {
	case host == "" && u.Hostname() == "":
		return false
	case host != "" && !strings.HasPrefix(host, "/"):
		return false
	case strings.Contains(u.Host+host, ","):
		return false
	}
	for _, port := range []string{u.Port(), q.Get("port")} {
		if n, err := strconv.Atoi(port); port != "" && (err != nil || n < 1 || n > 65535) {
			return false
		}
	}
	return true
}

// redactErr keeps a password of url out of an error message.
func redactErr(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return msg
	}
	if pw, ok := u.User.Password(); ok {
		msg = blueprint.RedactPassword(msg, pw)
	}
	return blueprint.RedactPassword(msg, u.Query().Get("password"))
}

// BackendRemoved answers DELETE /v1/backends/{name}.
type BackendRemoved struct {
	Name string `json:"name"`
	// ForgottenDatabases counts the databases being deleted that were on it:
	// they are forgotten, not dropped (the server may be gone for good).
	ForgottenDatabases int    `json:"forgotten_databases"`
	RaftIndex          uint64 `json:"raft_index,omitempty"`
}

// removeBackend: DELETE /v1/backends/{name}, operator only. Refused (409)
// while the backend holds a database that is not being deleted.
func (s *server) removeBackend(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("remove backends"); err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	n := 0
	var active uint16
	s.view(func(st *fsm.State) {
		active = st.ActiveLogVersion()
		for _, d := range st.Databases {
			if d.Backend == name && d.Status == fsm.StatusDeleting {
				n++
			}
		}
	})
	rm := fsm.RemoveBackend{Name: name}
	if active >= 6 {
		rm.At = s.now() // a build before it would revoke at the zero time
	}
	index, err := s.apply(r.Context(), fsm.CmdRemoveBackend, rm)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, BackendRemoved{Name: name, ForgottenDatabases: n, RaftIndex: index})
	return nil
}

// listBackends: GET /v1/backends, operator only, passwords redacted.
func (s *server) listBackends(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("list backends"); err != nil {
		return err
	}
	out := []Backend{}
	s.view(func(st *fsm.State) {
		for _, b := range st.SortedBackends() {
			out = append(out, backendView(st, b))
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func backendView(st *fsm.State, b *fsm.Backend) Backend {
	return Backend{Name: b.Name, URL: redactURL(b.URL), Databases: st.DatabasesOn(b.Name), CreatedAt: b.CreatedAt}
}

// redactURL hides the password of a connection URL, in the user info and in a
// password= query parameter.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
