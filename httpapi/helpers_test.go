package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"tdb/fsm"
	"tdb/httpapi"
	"tdb/httpapi/apitest"
)

const adminKey = "operator-secret"

// env is a control plane over a fake cluster with one backend, one project and
// the tenant-mode workspaces myapp and other.
type env struct {
	t         *testing.T
	c         *apitest.Cluster
	url       string
	projectID string
	proxyPass string // the project's admin key
}

// newEnv starts the API; outcome settles new databases (apitest.Ready when nil).
func newEnv(t *testing.T, outcome apitest.Outcome) *env {
	t.Helper()
	e := newBareEnv(t, outcome, nil)
	e.setUp()
	return e
}

// setUp makes a backend, a project and its workspaces myapp and other.
func (e *env) setUp() {
	e.t.Helper()
	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "pg1", "url": "postgres://postgres:s3cret@db1:5432/postgres"}, 201)
	p := e.call(adminKey, "POST", "/v1/projects", map[string]string{"name": "demo"}, 201)
	e.projectID, e.proxyPass = p["project_id"].(string), p["proxy_password"].(string)
	for _, ws := range []string{"myapp", "other"} {
		e.call(e.proxyPass, "POST", "/v1/workspaces", map[string]string{"name": ws}, 201)
	}
}

// removeTenantDB does what the reconciler does once a deleted tenant's
// database is dropped: the database, and the tenant, are forgotten.
func (e *env) removeTenantDB(name string) {
	e.t.Helper()
	var db string
	e.c.FSM().View(func(st *fsm.State) { db = st.Project(e.projectID).Tenants[name].Database })
	if _, _, err := e.c.Apply(context.Background(), fsm.CmdRemoveDatabase, fsm.RemoveDatabase{Name: db}); err != nil {
		e.t.Fatal(err)
	}
}

// newBareEnv starts the API over an empty state; handler builds the handler
// (httpapi.New when nil).
func newBareEnv(t *testing.T, outcome apitest.Outcome, handler func(httpapi.Cluster) http.Handler) *env {
	t.Helper()
	if outcome == nil {
		outcome = apitest.Ready
	}
	if handler == nil {
		handler = func(c httpapi.Cluster) http.Handler { return httpapi.New(c, t.Logf) }
	}
	c := apitest.New(adminKey)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Provision(ctx, outcome) }()
	srv := httptest.NewServer(handler(c))
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return &env{t: t, c: c, url: srv.URL}
}

// do sends a request with a bearer key (none when empty) and returns the
// status and raw body. body is JSON-encoded unless it is a string.
func (e *env) do(key, method, path string, body any, header ...string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// call is do expecting a status and a JSON object back.
func (e *env) call(key, method, path string, body any, want int) map[string]any {
	e.t.Helper()
	status, data := e.do(key, method, path, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, data)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("%s %s: %v: %s", method, path, err, data)
	}
	return out
}

// list is do expecting 200 and a JSON array back.
func (e *env) list(key, path string) []map[string]any {
	e.t.Helper()
	status, data := e.do(key, "GET", path, nil)
	if status != 200 {
		e.t.Fatalf("GET %s: status %d: %s", path, status, data)
	}
	var out []map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("GET %s: %v: %s", path, err, data)
	}
	return out
}

// tenant creates a tenant and returns its key (from the connection string).
func (e *env) tenant(blueprint, name string) string {
	e.t.Helper()
	out := e.call(e.proxyPass, "POST", "/v1/tenants", map[string]string{"name": name, "blueprint": blueprint}, 201)
	return tenantKey(e.t, out["connection_string"].(string))
}

// key creates an API key with the project's admin key and returns its secret.
func (e *env) key(role, scopeType string, values ...string) string {
	e.t.Helper()
	body := map[string]any{"role": role, "scope_type": scopeType}
	if len(values) > 0 {
		body["scope_values"] = values
	}
	return e.call(e.proxyPass, "POST", "/v1/apikeys", body, 201)["key"].(string)
}

// database copies a physical database from the state.
func (e *env) database(name string) fsm.Database {
	var d fsm.Database
	e.c.FSM().View(func(st *fsm.State) {
		if p := st.Databases[name]; p != nil {
			d = *p
		}
	})
	return d
}

// physical is the physical database of a project's wire database name.
func (e *env) physical(projectID, database string) string {
	var name string
	e.c.FSM().View(func(st *fsm.State) {
		if tg, ok := st.Resolve(projectID, database); ok && tg.Database != nil {
			name = tg.Database.Name
		}
	})
	return name
}

func tenantKey(t *testing.T, conn string) string {
	t.Helper()
	userinfo, _, ok := strings.Cut(strings.TrimPrefix(conn, "postgresql://"), "@")
	_, pass, ok2 := strings.Cut(userinfo, ":")
	if !ok || !ok2 {
		t.Fatalf("no password in connection string %q", conn)
	}
	return pass
}

// errorOf decodes an error body.
func errorOf(t *testing.T, data []byte) (code, message string) {
	t.Helper()
	var e struct{ Code, Message string }
	if err := json.Unmarshal(data, &e); err != nil || e.Code == "" {
		t.Fatalf("not an error body: %s", data)
	}
	return e.Code, e.Message
}
