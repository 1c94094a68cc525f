package httpapi_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/httpapi"
)

func TestCreateTenant(t *testing.T) {
	e := newEnv(t, nil)
	out := e.call(e.proxyPass, "POST", "/v1/tenants", map[string]string{"name": "wayne", "blueprint": "myapp"}, 201)
	for field, want := range map[string]any{
		"tenant_id": "wayne", "blueprint": "myapp", "database": "myapp__wayne", "status": "ready",
	} {
		if out[field] != want {
			t.Errorf("%s = %v, want %v", field, out[field], want)
		}
	}
	if idx, _ := out["raft_index"].(float64); idx <= 0 {
		t.Errorf("raft_index = %v", out["raft_index"])
	}
	conn := regexp.MustCompile(fmt.Sprintf(`^postgresql://%s:(tdb_[0-9a-f]{16})@127\.0\.0\.1:5432/myapp__wayne\?sslmode=require$`, e.projectID))
	m := conn.FindStringSubmatch(out["connection_string"].(string))
	if m == nil {
		t.Fatalf("connection_string %q", out["connection_string"])
	}
	// The tenant key is a tenant-scoped admin key: it reads its tenant.
	got := e.call(m[1], "GET", "/v1/tenants/wayne", nil, 200)
	if got["status"] != "ready" || got["database"] != "myapp__wayne" {
		t.Fatalf("tenant %v", got)
	}
	// The physical name says nothing of the project or the tenant: every
	// session on the backend server can list it.
	phys, _ := got["physical_database"].(string)
	if !regexp.MustCompile(`^db_[0-9a-f]{24}$`).MatchString(phys) || phys != e.physical(e.projectID, "myapp__wayne") {
		t.Fatalf("physical_database %q, state has %q", phys, e.physical(e.projectID, "myapp__wayne"))
	}
	d := e.database(phys)
	if d.Logical != "myapp__wayne" || d.Backend != "pg1" || len(d.Passwords.Admin) != 32 || d.Passwords.Admin == d.Passwords.Read {
		t.Fatalf("database %+v", d)
	}
}

func TestCreateTenantFailed(t *testing.T) {
	e := newEnv(t, func(d *fsm.Database) (string, string) {
		if d.Logical == "myapp__broken" {
			return fsm.StatusFailed, "create database: disk full"
		}
		return fsm.StatusReady, ""
	})
	status, data := e.do(e.proxyPass, "POST", "/v1/tenants", map[string]string{"name": "broken", "blueprint": "myapp"})
	code, msg := errorOf(t, data)
	if status != http.StatusBadGateway || code != "backend_error" || msg != "create database: disk full" {
		t.Fatalf("got %d %s", status, data)
	}
	got := e.call(e.proxyPass, "GET", "/v1/tenants/broken", nil, 200)
	if got["status"] != "failed" || got["error"] != "create database: disk full" {
		t.Fatalf("failed tenant listed as %v", got)
	}
}

func TestCreateTenantTimeout(t *testing.T) {
	stuck := func(d *fsm.Database) (string, string) {
		if d.Kind == fsm.KindTenant {
			return "", "" // tenants never leave provisioning
		}
		return fsm.StatusReady, ""
	}
	e := newBareEnv(t, stuck, func(c httpapi.Cluster) http.Handler {
		return httpapi.NewWithProvisionTimeout(c, 50*time.Millisecond)
	})
	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "pg1", "url": "postgres://postgres@db1/postgres"}, 201)
	p := e.call(adminKey, "POST", "/v1/projects", map[string]string{"name": "demo"}, 201)
	key := p["proxy_password"].(string)
	e.call(key, "POST", "/v1/workspaces", map[string]string{"name": "myapp"}, 201)
	status, data := e.do(key, "POST", "/v1/tenants", map[string]string{"name": "slow", "blueprint": "myapp"})
	if code, _ := errorOf(t, data); status != http.StatusGatewayTimeout || code != "timeout" {
		t.Fatalf("got %d %s", status, data)
	}
	if got := e.call(key, "GET", "/v1/tenants/slow", nil, 200); got["status"] != "provisioning" {
		t.Fatalf("slow tenant %v", got)
	}
}

func TestDeleteTenant(t *testing.T) {
	e := newEnv(t, nil)
	wayneKey := e.tenant("myapp", "wayne")
	out := e.call(e.proxyPass, "DELETE", "/v1/tenants/wayne", nil, 202)
	if out["status"] != "deleting" || out["raft_index"] == nil {
		t.Fatalf("delete response %v", out)
	}
	// Its only tenant is going: the tenant key is revoked with it.
	if status, _ := e.do(wayneKey, "GET", "/v1/tenants/wayne", nil); status != 401 {
		t.Fatalf("tenant key after delete: %d", status)
	}
	if got := e.call(e.proxyPass, "GET", "/v1/tenants/wayne", nil, 200); got["status"] != "deleting" {
		t.Fatalf("deleted tenant %v", got)
	}
}

// TestPathsAreNotCleaned: a path with ".." segments, or a name holding an
// escaped slash, reaches no other resource (a client that follows a
// redirect would repeat a DELETE on it); it matches no route.
func TestPathsAreNotCleaned(t *testing.T) {
	e := newEnv(t, nil)
	e.tenant("myapp", "wayne")
	for _, path := range []string{"/v1/tenants/nobody/../wayne", "/v1/tenants/nobody%2F..%2Fwayne", "/v1/tenants/./wayne"} {
		status, body := e.do(e.proxyPass, "DELETE", path, nil)
		if status != 404 || !strings.Contains(string(body), `"not_found"`) {
			t.Fatalf("DELETE %s: %d %s, want 404 not_found", path, status, body)
		}
	}
	if got := e.call(e.proxyPass, "GET", "/v1/tenants/wayne", nil, 200); got["status"] != "ready" {
		t.Fatalf("wayne after the refused deletes: %v", got)
	}
}

// TestNoKeyForATenantBeingDeleted: a key made for a tenant being deleted
// would keep its name and reach the next tenant that takes it, in another
// blueprint too, where its maker could not reach.
func TestNoKeyForATenantBeingDeleted(t *testing.T) {
	e := newEnv(t, nil)
	e.tenant("myapp", "wayne")
	ws := e.key("admin", "workspace", "myapp")
	e.call(e.proxyPass, "DELETE", "/v1/tenants/wayne", nil, 202)
	status, data := e.do(ws, "POST", "/v1/apikeys", map[string]any{"role": "admin", "scope_type": "tenant", "scope_values": []string{"wayne"}})
	if code, msg := errorOf(t, data); status != 409 || code != "conflict" || msg != `tenant "wayne" is being deleted` {
		t.Fatalf("a key for a tenant being deleted: %d %s", status, data)
	}
	// Once it is gone, another blueprint's wayne is out of the workspace
	// key's reach, and so out of any key it made.
	e.removeTenantDB("wayne")
	e.tenant("other", "wayne")
	if status, _ := e.do(ws, "GET", "/v1/tenants/wayne", nil); status != 403 {
		t.Fatalf("the workspace key on other's wayne: %d", status)
	}
}
