package httpapi_test

import (
	"strings"
	"testing"
)

func TestBackendsRedactPasswords(t *testing.T) {
	e := newEnv(t, nil)
	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "pg2", "url": "postgresql://admin@db2:5432/postgres?password=hunter2&sslmode=disable"}, 201)
	status, data := e.do(adminKey, "GET", "/v1/backends", nil)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	for _, secret := range []string{"s3cret", "hunter2"} {
		if strings.Contains(string(data), secret) {
			t.Fatalf("backend list leaks %q: %s", secret, data)
		}
	}
	got := e.list(adminKey, "/v1/backends")
	if len(got) != 2 || got[0]["url"] != "postgres://postgres:xxxxx@db1:5432/postgres" || got[0]["databases"] != float64(2) {
		t.Fatalf("backends %v", got)
	}
}

// TestBackendUnixSocketURL: a backend may be registered by its Unix socket
// directory (host= in the query); a URL with neither a host nor a socket
// directory is refused.
func TestBackendUnixSocketURL(t *testing.T) {
	e := newEnv(t, nil)
	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "sock", "url": "postgres://postgres:pw@/postgres?host=/var/run/postgresql&port=5432"}, 201)
	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "tcp", "url": "postgresql://postgres:pw@[::1]:6543/postgres?sslmode=disable"}, 201)
	for _, bad := range []string{"postgres:///postgres", "postgres:///postgres?host=relative/dir", "postgres:///postgres?port=5432",
		"postgres://postgres:pw@/postgres?host=/a,/b", "postgres://postgres:pw@db1,db2/postgres", "postgres://postgres:pw@db:abc/postgres",
		"postgres://postgres:pw@db:0/postgres", "postgres://postgres:pw@/postgres?host=/tmp&port=99999", "mysql://root@db/postgres"} {
		status, data := e.do(adminKey, "POST", "/v1/backends", map[string]string{"name": "bad", "url": bad})
		if status != 400 || !strings.Contains(string(data), "invalid backend url") {
			t.Fatalf("%s: status %d: %s", bad, status, data)
		}
	}
}

// TestRemoveBackend: a backend holding a live database is refused with the
// databases named; once only databases being deleted are left, it goes and
// they are forgotten.
func TestRemoveBackend(t *testing.T) {
	e := newEnv(t, nil)
	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "pg2", "url": "postgres://postgres:pw@db2/postgres"}, 201)
	e.tenant("myapp", "wayne") // placed on pg2, which holds nothing yet
	status, data := e.do(adminKey, "DELETE", "/v1/backends/pg2", nil)
	if status != 409 || !strings.Contains(string(data), `still holds 1 database(s) not being deleted`) || !strings.Contains(string(data), "myapp__wayne") {
		t.Fatalf("backend in use: %d %s", status, data)
	}
	if status, _ := e.do(e.proxyPass, "DELETE", "/v1/backends/pg2", nil); status != 403 {
		t.Fatalf("a project key removed a backend: %d", status)
	}
	e.call(e.proxyPass, "DELETE", "/v1/tenants/wayne", nil, 202)
	out := e.call(adminKey, "DELETE", "/v1/backends/pg2", nil, 200)
	if out["name"] != "pg2" || out["forgotten_databases"] != float64(1) {
		t.Fatalf("removed: %v", out)
	}
	if got := e.list(adminKey, "/v1/backends"); len(got) != 1 {
		t.Fatalf("backends after removal: %v", got)
	}
	if status, _ := e.do(e.proxyPass, "GET", "/v1/tenants/wayne", nil); status != 404 {
		t.Fatalf("the deleted tenant on the removed backend: %d", status)
	}
	if status, _ := e.do(adminKey, "DELETE", "/v1/backends/pg2", nil); status != 404 {
		t.Fatalf("removing it again: %d", status)
	}
}
