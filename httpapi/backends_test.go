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
