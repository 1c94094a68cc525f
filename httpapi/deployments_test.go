package httpapi_test

import (
	"context"
	"testing"

	"tdb/fsm"
)

func TestDeploymentsAPI(t *testing.T) {
	e := newEnv(t, nil)
	e.tenant("myapp", "wayne")
	e.tenant("myapp", "globex")
	e.tenant("other", "acme")

	// Nothing to deploy yet.
	status, data := e.do(e.proxyPass, "POST", "/v1/deployments", map[string]any{"blueprint": "myapp", "all": true})
	if code, _ := errorOf(t, data); status != 400 || code != "bad_request" {
		t.Fatalf("no versions: %d %s", status, data)
	}
	for _, stmt := range []string{"CREATE TABLE a (id int)", "CREATE TABLE b (id int)"} {
		if _, _, err := e.c.Apply(context.Background(), fsm.CmdAddBlueprintVersion, fsm.AddBlueprintVersion{
			ProjectID: e.projectID, Workspace: "myapp", Statements: []string{stmt}, Checksum: "x",
		}); err != nil {
			t.Fatal(err)
		}
	}

	wsRead := e.key("read", "workspace", "myapp")
	wsAdminOther := e.key("admin", "workspace", "other")
	tenantAdmin := e.key("admin", "tenant", "wayne")
	refusals := []struct {
		name   string
		key    string
		body   any
		status int
		code   string
	}{
		{"without all", e.proxyPass, map[string]any{"blueprint": "myapp"}, 400, "bad_request"},
		{"bad name", e.proxyPass, map[string]any{"blueprint": "My App", "all": true}, 400, "bad_request"},
		{"unknown blueprint", e.proxyPass, map[string]any{"blueprint": "nope", "all": true}, 404, "not_found"},
		{"version past latest", e.proxyPass, map[string]any{"blueprint": "myapp", "all": true, "version": 3}, 400, "bad_request"},
		{"concurrency too high", e.proxyPass, map[string]any{"blueprint": "myapp", "all": true, "concurrency": 1000}, 400, "bad_request"},
		{"unknown field", e.proxyPass, map[string]any{"blueprint": "myapp", "all": true, "tenants": []string{"x"}}, 400, "bad_request"},
		{"read key", wsRead, map[string]any{"blueprint": "myapp", "all": true}, 403, "permission_denied"},
		{"other workspace", wsAdminOther, map[string]any{"blueprint": "myapp", "all": true}, 403, "scope_denied"},
		{"tenant key", tenantAdmin, map[string]any{"blueprint": "myapp", "all": true}, 403, "scope_denied"},
	}
	for _, tc := range refusals {
		status, data := e.do(tc.key, "POST", "/v1/deployments", tc.body)
		if code, _ := errorOf(t, data); status != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, data, tc.status, tc.code)
		}
	}

	d := e.call(e.proxyPass, "POST", "/v1/deployments", map[string]any{"blueprint": "myapp", "all": true}, 202)
	id, _ := d["id"].(string)
	if len(id) != len("dep_")+12 || d["status"] != "in_progress" || d["target_version"] != 2.0 ||
		d["tenants_total"] != 2.0 || d["tenants_completed"] != 0.0 || d["tenants_failed"] != 0.0 || d["raft_index"] == nil {
		t.Fatalf("created %v", d)
	}
	results := d["results"].([]any)
	if r := results[0].(map[string]any); r["tenant_id"] != "globex" || r["status"] != "pending" || r["error"] != "" || r["duration_ms"] != 0.0 {
		t.Fatalf("result %v", r)
	}
	// One at a time per blueprint.
	status, data = e.do(e.proxyPass, "POST", "/v1/deployments", map[string]any{"blueprint": "myapp", "all": true, "version": 1})
	if code, _ := errorOf(t, data); status != 409 || code != "conflict" {
		t.Fatalf("second deployment: %d %s", status, data)
	}

	got := e.call(wsRead, "GET", "/v1/deployments/"+id, nil, 200)
	if got["id"] != id || len(got["results"].([]any)) != 2 {
		t.Fatalf("get %v", got)
	}
	for _, key := range []string{wsAdminOther, tenantAdmin} {
		if status, _ := e.do(key, "GET", "/v1/deployments/"+id, nil); status != 403 {
			t.Errorf("deployment visible out of scope: %d", status)
		}
	}
	if status, _ := e.do(e.proxyPass, "GET", "/v1/deployments/dep_000000000000", nil); status != 404 {
		t.Errorf("unknown deployment: %d", status)
	}
	if l := e.list(e.proxyPass, "/v1/deployments"); len(l) != 1 || l[0]["id"] != id || l[0]["results"] != nil {
		t.Fatalf("list %v", l)
	}
	if l := e.list(wsAdminOther, "/v1/deployments"); len(l) != 0 {
		t.Fatalf("list out of scope %v", l)
	}
}

// TestDeploymentWithoutTenantsListsNoResults: a deployment of a blueprint
// that has no tenants yet still carries results, empty, as scripts read it.
func TestDeploymentWithoutTenantsListsNoResults(t *testing.T) {
	e := newEnv(t, nil)
	e.call(e.proxyPass, "POST", "/v1/workspaces", map[string]string{"name": "lonely"}, 201)
	if _, _, err := e.c.Apply(context.Background(), fsm.CmdAddBlueprintVersion, fsm.AddBlueprintVersion{
		ProjectID: e.projectID, Workspace: "lonely", Statements: []string{"CREATE TABLE a (id int)"}, Checksum: "x",
	}); err != nil {
		t.Fatal(err)
	}
	d := e.call(e.proxyPass, "POST", "/v1/deployments", map[string]any{"blueprint": "lonely", "all": true}, 202)
	if r, ok := d["results"].([]any); !ok || len(r) != 0 {
		t.Fatalf("created %v, want results []", d)
	}
	got := e.call(e.proxyPass, "GET", "/v1/deployments/"+d["id"].(string), nil, 200)
	if r, ok := got["results"].([]any); !ok || len(r) != 0 {
		t.Fatalf("got %v, want results []", got)
	}
}
