package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"tdb/fsm"
	"tdb/httpapi"
	"tdb/httpapi/apitest"
	"tdb/querylog"
)

// fuzzEnv is one control plane shared by every input of FuzzHTTPAPI: a
// project with workspaces myapp (a blueprint version, tenant wayne) and
// other, and keys of each kind. Each input starts from the same state,
// restored from a snapshot.
type fuzzEnv struct {
	c        *apitest.Cluster
	url      string
	snapshot []byte
	keys     []string          // indexed by the input's key selector
	vars     map[string]string // placeholders of path, headers and body
	panicked chan string
	served   atomic.Int64 // requests that reached the API's handler
}

var (
	fuzzOnce   sync.Once
	fuzzShared *fuzzEnv
)

func sharedFuzzEnv(f *testing.F) *fuzzEnv {
	fuzzOnce.Do(func() { fuzzShared = newFuzzEnv(f) })
	return fuzzShared
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	c := apitest.New(adminKey)
	ql := querylog.New(100, nil)
	// Nothing listens on port 1: a request that gets as far as the backend
	// (a schema, a tenant's query) fails at once with 502 backend_error.
	const backendURL = "postgres://postgres:s3cret@127.0.0.1:1/postgres"
	// Provisioning settles every new database at once, as a healthy
	// reconciler would; it runs for the life of the fuzzing process.
	go c.Provision(context.Background(), apitest.Ready)
	fe := &fuzzEnv{c: c, panicked: make(chan string, 1)}
	h := httpapi.New(apitest.WithQueryLog{Cluster: c, Log: ql}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				select {
				case fe.panicked <- fmt.Sprintf("%v\n%s", v, debug.Stack()):
				default:
				}
				panic(v)
			}
		}()
		fe.served.Add(1)
		h.ServeHTTP(w, r)
	}))
	fe.url = srv.URL

	must := func(key, method, path string, body any, want int) map[string]any {
		data, err := json.Marshal(body)
		if err != nil {
			f.Fatal(err)
		}
		req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(data))
		if err != nil {
			f.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			f.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			f.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
		}
		var out map[string]any
		if err := json.Unmarshal(data, &out); err != nil {
			f.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
		return out
	}
	must(adminKey, "POST", "/v1/backends", map[string]string{"name": "pg1", "url": backendURL}, 201)
	p := must(adminKey, "POST", "/v1/projects", map[string]string{"name": "demo"}, 201)
	projectID, proxyPass := p["project_id"].(string), p["proxy_password"].(string)
	for _, ws := range []string{"myapp", "other"} {
		must(proxyPass, "POST", "/v1/workspaces", map[string]string{"name": ws}, 201)
	}
	if _, _, err := c.Apply(context.Background(), fsm.CmdAddBlueprintVersion, fsm.AddBlueprintVersion{
		ProjectID: projectID, Workspace: "myapp", Statements: []string{"CREATE TABLE t (id int)"},
		Checksum: "c0ffee", At: time.Unix(1700000000, 0).UTC(),
	}); err != nil {
		f.Fatal(err)
	}
	tenant := must(proxyPass, "POST", "/v1/tenants", map[string]string{"name": "wayne", "blueprint": "myapp"}, 201)
	userinfo, _, _ := strings.Cut(strings.TrimPrefix(tenant["connection_string"].(string), "postgresql://"), "@")
	_, tenantKey, _ := strings.Cut(userinfo, ":")
	readKey := must(proxyPass, "POST", "/v1/apikeys", map[string]any{"role": "read", "scope_type": "project"}, 201)
	wsKey := must(proxyPass, "POST", "/v1/apikeys", map[string]any{"role": "admin", "scope_type": "workspace", "scope_values": []string{"myapp"}}, 201)
	dep := must(proxyPass, "POST", "/v1/deployments", map[string]any{"blueprint": "myapp", "all": true}, 202)

	// The selector picks, modulo 7: the operator, the project's admin key,
	// a project read key, a workspace admin key, a tenant key, none, an
	// unknown one.
	fe.keys = []string{adminKey, proxyPass, readKey["key"].(string), wsKey["key"].(string), tenantKey, "", "sk_" + strings.Repeat("0", 40)}
	fe.vars = map[string]string{
		"$PROJECT": projectID, "$KEYID": readKey["id"].(string), "$DEP": dep["id"].(string),
	}
	snap, err := c.FSM().Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		f.Fatal(err)
	}
	fe.snapshot = buf.Bytes()
	return fe
}

// bufSink is a raft.SnapshotSink over a buffer.
type bufSink struct{ *bytes.Buffer }

func (*bufSink) ID() string    { return "fuzz" }
func (*bufSink) Cancel() error { return nil }
func (*bufSink) Close() error  { return nil }

func (fe *fuzzEnv) expand(s string) string {
	for k, v := range fe.vars {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

// FuzzHTTPAPI sends requests made of a key, a method, a path, headers
// ("Name: value" lines) and a body, with {name} in the path standing for a
// path-escaped name, to the control plane over a real FSM.
// Whatever they hold, the answer is never a 5xx (other than 503 when the
// cluster cannot answer, and 502 where the request reaches a backend), a
// client error is a JSON {code, message} without control characters, and a refused request leaves the
// state as it was. $PROJECT, $KEYID and $DEP stand for the project id, a
// key id and a deployment id.
func FuzzHTTPAPI(f *testing.F) {
	fe := sharedFuzzEnv(f)
	for _, s := range []struct {
		key                              uint8
		method, path, name, header, body string
	}{
		{0, "GET", "/healthz", "", "", ""},
		{0, "POST", "/v1/projects", "", "", `{"name":"acme"}`},
		{0, "GET", "/v1/projects", "", "", ""},
		{1, "POST", "/v1/workspaces", "", "", `{"name":"shop","mode":"control"}`},
		{0, "POST", "/v1/workspaces", "", "X-Tdb-Project: $PROJECT", `{"name":"shop","database":"redis"}`},
		{1, "GET", "/v1/workspaces", "", "", ""},
		{1, "GET", "/v1/workspaces/{name}", "myapp", "", ""},
		{1, "GET", "/v1/workspaces/{name}/settings", "myapp", "", ""},
		{1, "PATCH", "/v1/workspaces/{name}/settings", "myapp", "", `{"max_rows_per_query":10,"query_timeout_ms":1000,"max_connections":5}`},
		{1, "POST", "/v1/workspaces/{name}/schema", "other", "", `{"template":"saas"}`},
		{1, "POST", "/v1/workspaces/{name}/import-full", "myapp", "", `{"routing_field":"org_id"}`},
		{1, "GET", "/v1/imports", "", "", ""},
		{1, "GET", "/v1/imports/{name}", "imp_000000000000", "", ""},
		{1, "GET", "/v1/blueprints/{name}/versions", "myapp", "", ""},
		{1, "POST", "/v1/deployments", "", "", `{"blueprint":"myapp","all":true,"concurrency":2}`},
		{1, "GET", "/v1/deployments?blueprint=myapp", "", "", ""},
		{1, "GET", "/v1/deployments/{name}", "$DEP", "", ""},
		{1, "POST", "/v1/tenants", "", "", `{"name":"bruce","blueprint":"myapp"}`},
		{1, "GET", "/v1/tenants?blueprint=myapp", "", "", ""},
		{1, "GET", "/v1/tenants/{name}", "wayne", "", ""},
		{1, "DELETE", "/v1/tenants/{name}", "wayne", "", ""},
		{4, "POST", "/v1/tenants/{name}/query", "wayne", "", `{"sql":"SELECT $1","params":[1]}`},
		{1, "POST", "/tenants/{name}/query", "wayne", "", `{"sql":"SELECT 1"}`},
		{1, "POST", "/v1/apikeys", "", "", `{"name":"ci","role":"write","scope_type":"tenant","scope_values":["wayne"]}`},
		{3, "GET", "/v1/apikeys", "", "", ""},
		{1, "DELETE", "/v1/apikeys/{name}", "$KEYID", "", ""},
		{0, "POST", "/v1/backends", "", "", `{"name":"pg2","url":"postgres://u:p@db2:5432/postgres"}`},
		{0, "GET", "/v1/backends", "", "", ""},
		{0, "DELETE", "/v1/backends/{name}", "pg1", "", ""},
		{2, "GET", "/v1/cluster/status", "", "", ""},
		{0, "GET", "/v1/cluster/settings", "", "", ""},
		{0, "PATCH", "/v1/cluster/settings", "", "", `{"ban_sec":60,"max_ban_sec":3600}`},
		{0, "GET", "/v1/cluster/backup", "", "", ""},
		{1, "GET", "/v1/logs?tenant=wayne&since=1h&limit=10", "", "", ""},
		{0, "GET", "/v1/logs?since=2024-01-01T00:00:00Z", "", "X-Forwarded-For: 10.0.0.1", ""},
		{1, "POST", "/v1/tenants", "", "Content-Type: text/plain", `{"name":"a","name":"b","blueprint":"myapp"}`},
		{5, "GET", "/v1/tenants", "", "Authorization: Basic dXNlcjpwYXNz", ""},
		{6, "GET", "/v1/../v1/tenants/%2e%2e", "", "", ""},
		{3, "PATCH", "/v1/workspaces/{name}/settings", "other", "", `{"max_connections":1}`},
		{2, "POST", "/v1/tenants", "", "", `{"name":"bruce","blueprint":"myapp"}`},
		{4, "DELETE", "/v1/tenants/{name}", "wayne", "", ""},
		{3, "POST", "/v1/tenants/{name}/query", "wayne", "", `{"sql":"SELECT $1::jsonb","params":[{"a":[1,null]}]}`},
		{4, "POST", "/v1/apikeys", "", "X-Tdb-Project: $PROJECT", `{"role":"read","scope_type":"tenant","scope_values":["wayne","wayne"]}`},
		{3, "POST", "/v1/deployments", "", "", `{"blueprint":"other","all":true,"version":1}`},
	} {
		f.Add(s.key, s.method, s.path, s.name, s.header, []byte(s.body))
	}
	client := &http.Client{Timeout: 30 * time.Second}
	f.Fuzz(func(t *testing.T, key uint8, method, path, name, header string, body []byte) {
		path = strings.ReplaceAll(fe.expand(path), "{name}", url.PathEscape(fe.expand(name)))
		header, body = fe.expand(header), []byte(fe.expand(string(body)))
		if reachesSource(path, body) || !validMethod(method) {
			return
		}
		req, err := http.NewRequest(method, fe.url+"/"+strings.TrimPrefix(path, "/"), bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if k := fe.keys[int(key)%len(fe.keys)]; k != "" {
			req.Header.Set("Authorization", "Bearer "+k)
		}
		for _, line := range strings.Split(header, "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok || !validHeader(name, strings.TrimSpace(value)) {
				continue
			}
			req.Header.Add(name, strings.TrimSpace(value))
		}
		if err := fe.c.FSM().Restore(io.NopCloser(bytes.NewReader(fe.snapshot))); err != nil {
			t.Fatal(err)
		}
		before, err := fe.c.FSM().Hash()
		if err != nil {
			t.Fatal(err)
		}
		served := fe.served.Load()
		resp, err := client.Do(req)
		select {
		case p := <-fe.panicked:
			t.Fatalf("%s %s: handler panicked: %s", method, path, p)
		default:
		}
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: reading the response: %v", method, path, err)
		}
		if fe.served.Load() == served {
			return // refused by net/http before the API (a space in the query)
		}
		status := resp.StatusCode
		what := fmt.Sprintf("%s %s (headers %q, body %q): %d %s", method, req.URL.Path, header, body, status, data)
		if status < 400 {
			if method != http.MethodHead && !json.Valid(data) {
				t.Fatalf("%s: not JSON", what)
			}
			return
		}
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		switch {
		case method == http.MethodHead:
		case resp.Header.Get("Content-Type") != "application/json":
			t.Fatalf("%s: not a JSON error (Content-Type %q)", what, resp.Header.Get("Content-Type"))
		case json.Unmarshal(data, &e) != nil || e.Code == "" || e.Message == "":
			t.Fatalf("%s: not a JSON error {code, message}", what)
		case status < 500 && strings.ContainsFunc(e.Message, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }):
			// The CLI prints messages to a terminal: what the client sent
			// is quoted or escaped in them.
			t.Fatalf("%s: a control character in the message", what)
		}
		switch {
		case status < 500:
			if !strings.Contains(" 400 401 403 404 405 409 413 415 422 429 ", fmt.Sprintf(" %d ", status)) {
				t.Fatalf("%s: unexpected client error status", what)
			}
		case status == http.StatusServiceUnavailable && (e.Code == "unavailable" || e.Code == "not_leader" || method == http.MethodHead):
		case status == http.StatusBadGateway && reachesBackend(path):
		default:
			t.Fatalf("%s: server error for a client's input", what)
		}
		after, err := fe.c.FSM().Hash()
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("%s: the state changed", what)
		}
	})
}

// reachesBackend reports whether a path's handler may connect to a backend
// server (which has none to reach here).
func reachesBackend(path string) bool {
	return strings.HasSuffix(path, "/schema") || strings.HasSuffix(path, "/import-full") || strings.HasSuffix(path, "/query")
}

// reachesSource reports whether a request may make the server connect to a
// database URL of the client's (from_url), which the fuzzer must not do.
func reachesSource(path string, body []byte) bool {
	b := strings.ToLower(string(body))
	return reachesBackend(path) && (strings.Contains(b, "from_url") || strings.Contains(b, `\u`))
}

func validMethod(m string) bool {
	if m == "" || m == http.MethodConnect {
		return false
	}
	for _, r := range m {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return false
		}
	}
	return true
}

// validHeader reports whether a client can send the header; Host and the
// body's framing are the client's own.
func validHeader(name, value string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "", "Host", "Content-Length", "Transfer-Encoding", "Connection", "Trailer", "Te", "Upgrade", "Expect":
		return false
	}
	if !validMethod(name) {
		return false
	}
	for _, r := range value {
		if (r < ' ' && r != '\t') || r == 0x7f {
			return false
		}
	}
	return true
}
