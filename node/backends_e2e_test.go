package node_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
)

// TestBackendsAddTriesTheServer: a server the node cannot reach, or cannot
// manage, is refused with the reason and changes nothing; a bad backend
// would otherwise take every new tenant and fail it.
func TestBackendsAddTriesTheServer(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	backends := func() []map[string]any {
		t.Helper()
		var out []map[string]any
		e.MustDo(t, "GET", "/v1/backends", e.AdminKey, "", nil, &out)
		return out
	}
	before := len(backends())

	su, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { su.Close(context.Background()) })
	role := fmt.Sprintf("plain user %d", time.Now().UnixNano()) // the server is shared
	if _, err := su.Exec(ctx, `CREATE ROLE "`+role+`" LOGIN PASSWORD 's3cret-pw'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = su.Exec(context.Background(), `DROP ROLE "`+role+`"`) })
	plain, _ := url.Parse(e.PG.URL())
	plain.User = url.UserPassword(role, "s3cret-pw")

	for _, tc := range []struct {
		name, url, want string
	}{
		{"unreachable", "postgres://postgres:s3cret-pw@127.0.0.1:1/postgres?sslmode=disable", "backend dead cannot be registered: "},
		{"not a superuser", plain.String(), `backend plain cannot be registered: role "` + role + `" is not a superuser on the server`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.Fields(tc.want)[1]
			var out struct{ Code, Message string }
			status := e.Do(t, "POST", "/v1/backends", e.AdminKey, "", map[string]string{"name": name, "url": tc.url}, &out)
			if status != 422 || out.Code != "backend_error" || !strings.HasPrefix(out.Message, tc.want) {
				t.Fatalf("got %d %s %q, want 422 backend_error %q", status, out.Code, out.Message, tc.want)
			}
			if strings.Contains(out.Message, "s3cret-pw") {
				t.Fatalf("the password shows in %q", out.Message)
			}
			if n := len(backends()); n != before {
				t.Fatalf("%d backends after the refusal, want %d", n, before)
			}
		})
	}
	// The same server through its superuser is accepted.
	e.MustDo(t, "POST", "/v1/backends", e.AdminKey, "", map[string]string{"name": "second", "url": e.PG.URL()}, nil)
	if n := len(backends()); n != before+1 {
		t.Fatalf("%d backends, want %d", n, before+1)
	}
}

// TestNodePathsAreNotCleaned: through the node's whole HTTP handler (not the
// API router alone), a path with ".." or "." segments reaches no other
// resource, and is not redirected to one.
func TestNodePathsAreNotCleaned(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	e.CreateTenant(t, "wayne")
	for _, p := range []string{"/v1/tenants/nobody/../wayne", "/v1/tenants/./wayne", "/internal/../v1/tenants/wayne", "/v1/tenants/nobody%2F..%2Fwayne"} {
		req, err := http.NewRequest("DELETE", "http://"+e.Node.HTTPAddr()+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.ProxyPassword)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("DELETE %s: %d (Location %q), want 404", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	var out struct{ Status string }
	e.MustDo(t, "GET", "/v1/tenants/wayne", e.ProxyPassword, "", nil, &out)
	if out.Status != "ready" {
		t.Fatalf("wayne after the refused deletes: %+v", out)
	}
	// The node's own paths still answer.
	resp, err := http.Get("http://" + e.Node.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
}
