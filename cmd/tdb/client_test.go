package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLostAnswer: a write the API received but did not answer (the node was
// killed while it ran it) may have been applied. The CLI said "cannot reach
// the tdb API", as if nothing had been sent, so a user ran it again (and a
// tenants create got "already exists" with the tenant's key lost). A
// connection refused is still "cannot reach".
func TestLostAnswer(t *testing.T) {
	for _, v := range []string{"TDB_API_URL", "TDB_API_KEY", "TDB_ADMIN_KEY", "TDB_PROJECT_ID"} {
		t.Setenv(v, "")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()

	code, out, errOut := tdb("--api-url", srv.URL, "--api-key", "k", "tenants", "create", "--blueprint", "myapp", "--name", "wayne")
	if code == 0 || out != "" || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if strings.Contains(errOut, "cannot reach") || !strings.Contains(errOut, "may have been applied") {
		t.Errorf("stderr %q: want it to say the request may have been applied", errOut)
	}

	code, _, errOut = tdb("--api-url", "http://127.0.0.1:1", "--api-key", "k", "tenants", "create", "--blueprint", "myapp", "--name", "wayne")
	if code == 0 || !strings.HasPrefix(errOut, "tdb: cannot reach the tdb API at http://127.0.0.1:1") || strings.Contains(errOut, "may have been applied") {
		t.Errorf("connection refused: exit %d, stderr %q", code, errOut)
	}
}
