package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/httpapi"
	"tdb/httpapi/apitest"
)

// TestScopeAndRole runs representative routes with every kind of caller.
func TestScopeAndRole(t *testing.T) {
	e := newEnv(t, nil)
	e.tenant("myapp", "wayne")
	e.tenant("myapp", "bruce")
	e.tenant("other", "alice")
	keys := map[string]string{
		"operator":      adminKey,
		"project_admin": e.proxyPass,
		"project_write": e.key("write", "project"),
		"project_read":  e.key("read", "project"),
		"ws_admin":      e.key("admin", "workspace", "myapp"),
		"ws_read":       e.key("read", "workspace", "myapp"),
		"tenant_admin":  e.key("admin", "tenant", "wayne"),
		"tenant_read":   e.key("read", "tenant", "wayne"),
	}
	tenant := func(bp, name string) map[string]string { return map[string]string{"blueprint": bp, "name": name} }
	key := func(role, scopeType string, values ...string) map[string]any {
		return map[string]any{"role": role, "scope_type": scopeType, "scope_values": values}
	}
	tests := []struct {
		name     string
		key      string
		method   string
		path     string
		body     any
		header   []string
		want     int
		wantCode string
	}{
		{name: "no key", method: "GET", path: "/v1/tenants", want: 401, wantCode: "unauthorized"},
		{name: "unknown key", key: "sk_nope", method: "GET", path: "/v1/tenants", want: 401, wantCode: "unauthorized"},

		{name: "operator without project header", key: "operator", method: "GET", path: "/v1/tenants", want: 400, wantCode: "bad_request"},
		{name: "operator with project header", key: "operator", method: "GET", path: "/v1/tenants", header: []string{"X-Tdb-Project", "$project"}, want: 200},
		{name: "operator with unknown project", key: "operator", method: "GET", path: "/v1/tenants", header: []string{"X-Tdb-Project", "tdb_00000000"}, want: 404, wantCode: "not_found"},
		{name: "operator creates tenant in project", key: "operator", method: "POST", path: "/v1/tenants", body: tenant("other", "op_made"), header: []string{"X-Tdb-Project", "$project"}, want: 201},
		{name: "project key names another project", key: "project_admin", method: "GET", path: "/v1/tenants", header: []string{"X-Tdb-Project", "tdb_00000000"}, want: 403, wantCode: "scope_denied"},

		{name: "project key cannot create projects", key: "project_admin", method: "POST", path: "/v1/projects", body: map[string]string{"name": "x"}, want: 403, wantCode: "permission_denied"},
		{name: "project key cannot list projects", key: "project_admin", method: "GET", path: "/v1/projects", want: 403, wantCode: "permission_denied"},
		{name: "project key cannot add backends", key: "project_admin", method: "POST", path: "/v1/backends", body: map[string]string{"name": "pg9", "url": "postgres://h/postgres"}, want: 403, wantCode: "permission_denied"},
		{name: "project key cannot list backends", key: "project_admin", method: "GET", path: "/v1/backends", want: 403, wantCode: "permission_denied"},
		{name: "project key cannot change cluster settings", key: "project_admin", method: "PATCH", path: "/v1/cluster/settings", body: map[string]any{"ban_sec": 5}, want: 403, wantCode: "permission_denied"},
		{name: "tenant key reads cluster status", key: "tenant_read", method: "GET", path: "/v1/cluster/status", want: 200},

		{name: "project read lists tenants", key: "project_read", method: "GET", path: "/v1/tenants", want: 200},
		{name: "project read cannot create tenant", key: "project_read", method: "POST", path: "/v1/tenants", body: tenant("myapp", "t1"), want: 403, wantCode: "permission_denied"},
		{name: "project write cannot create tenant", key: "project_write", method: "POST", path: "/v1/tenants", body: tenant("myapp", "t1"), want: 403, wantCode: "permission_denied"},
		{name: "project write cannot create workspace", key: "project_write", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "w1"}, want: 403, wantCode: "permission_denied"},
		{name: "project read cannot create key", key: "project_read", method: "POST", path: "/v1/apikeys", body: key("read", "project"), want: 403, wantCode: "permission_denied"},
		{name: "project read cannot delete tenant", key: "project_read", method: "DELETE", path: "/v1/tenants/bruce", want: 403, wantCode: "permission_denied"},
		{name: "project admin creates project key", key: "project_admin", method: "POST", path: "/v1/apikeys", body: key("read", "project"), want: 201},

		{name: "workspace admin creates tenant in its blueprint", key: "ws_admin", method: "POST", path: "/v1/tenants", body: tenant("myapp", "ws_made"), want: 201},
		{name: "workspace admin cannot create tenant in another blueprint", key: "ws_admin", method: "POST", path: "/v1/tenants", body: tenant("other", "ws_made2"), want: 403, wantCode: "scope_denied"},
		{name: "workspace admin cannot create workspace", key: "ws_admin", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "w2"}, want: 403, wantCode: "scope_denied"},
		{name: "workspace admin gets its workspace", key: "ws_admin", method: "GET", path: "/v1/workspaces/myapp", want: 200},
		{name: "workspace admin cannot get other workspace", key: "ws_admin", method: "GET", path: "/v1/workspaces/other", want: 403, wantCode: "scope_denied"},
		{name: "workspace admin gets its tenant", key: "ws_admin", method: "GET", path: "/v1/tenants/wayne", want: 200},
		{name: "workspace admin cannot get other blueprint's tenant", key: "ws_admin", method: "GET", path: "/v1/tenants/alice", want: 403, wantCode: "scope_denied"},
		{name: "workspace admin cannot delete other blueprint's tenant", key: "ws_admin", method: "DELETE", path: "/v1/tenants/alice", want: 403, wantCode: "scope_denied"},
		{name: "workspace admin changes its settings", key: "ws_admin", method: "PATCH", path: "/v1/workspaces/myapp/settings", body: map[string]any{"max_connections": 7}, want: 200},
		{name: "workspace admin cannot change other settings", key: "ws_admin", method: "PATCH", path: "/v1/workspaces/other/settings", body: map[string]any{"max_connections": 7}, want: 403, wantCode: "scope_denied"},
		{name: "workspace read lists versions", key: "ws_read", method: "GET", path: "/v1/blueprints/myapp/versions", want: 200},
		{name: "workspace read cannot list other versions", key: "ws_read", method: "GET", path: "/v1/blueprints/other/versions", want: 403, wantCode: "scope_denied"},
		{name: "workspace read cannot change settings", key: "ws_read", method: "PATCH", path: "/v1/workspaces/myapp/settings", body: map[string]any{"max_connections": 7}, want: 403, wantCode: "permission_denied"},

		{name: "tenant key gets its tenant", key: "tenant_admin", method: "GET", path: "/v1/tenants/wayne", want: 200},
		{name: "tenant key cannot get sibling tenant", key: "tenant_admin", method: "GET", path: "/v1/tenants/bruce", want: 403, wantCode: "scope_denied"},
		{name: "tenant key cannot list workspaces", key: "tenant_admin", method: "GET", path: "/v1/workspaces", want: 403, wantCode: "scope_denied"},
		{name: "tenant key cannot list versions", key: "tenant_admin", method: "GET", path: "/v1/blueprints/myapp/versions", want: 403, wantCode: "scope_denied"},
		{name: "tenant key cannot create tenant", key: "tenant_admin", method: "POST", path: "/v1/tenants", body: tenant("myapp", "t2"), want: 403, wantCode: "scope_denied"},
		{name: "tenant key cannot delete its tenant", key: "tenant_admin", method: "DELETE", path: "/v1/tenants/wayne", want: 403, wantCode: "scope_denied"},

		// Project scope never reaches a tenant database, over HTTP either.
		{name: "project key cannot query a tenant", key: "project_read", method: "POST", path: "/v1/tenants/wayne/query", body: map[string]string{"sql": "SELECT 1"}, want: 403, wantCode: "scope_denied"},
		{name: "project admin cannot query a tenant", key: "project_admin", method: "POST", path: "/v1/tenants/wayne/query", body: map[string]string{"sql": "SELECT 1"}, want: 403, wantCode: "scope_denied"},
		{name: "operator cannot query a tenant", key: "operator", method: "POST", path: "/v1/tenants/wayne/query", body: map[string]string{"sql": "SELECT 1"}, header: []string{"X-Tdb-Project", "$project"}, want: 403, wantCode: "scope_denied"},

		// No escalation: a key mints keys only within its own reach.
		{name: "tenant admin mints read key for its tenant", key: "tenant_admin", method: "POST", path: "/v1/apikeys", body: key("read", "tenant", "wayne"), want: 201},
		{name: "tenant admin cannot mint project key", key: "tenant_admin", method: "POST", path: "/v1/apikeys", body: key("admin", "project"), want: 403, wantCode: "scope_denied"},
		{name: "tenant admin cannot mint key for sibling", key: "tenant_admin", method: "POST", path: "/v1/apikeys", body: key("read", "tenant", "wayne", "bruce"), want: 403, wantCode: "scope_denied"},
		{name: "tenant admin cannot mint workspace key", key: "tenant_admin", method: "POST", path: "/v1/apikeys", body: key("read", "workspace", "myapp"), want: 403, wantCode: "scope_denied"},
		{name: "tenant read cannot mint anything", key: "tenant_read", method: "POST", path: "/v1/apikeys", body: key("read", "tenant", "wayne"), want: 403, wantCode: "permission_denied"},
		{name: "workspace admin mints tenant key in its blueprint", key: "ws_admin", method: "POST", path: "/v1/apikeys", body: key("write", "tenant", "bruce"), want: 201},
		{name: "workspace admin mints workspace key for itself", key: "ws_admin", method: "POST", path: "/v1/apikeys", body: key("read", "workspace", "myapp"), want: 201},
		{name: "workspace admin cannot mint key for other workspace", key: "ws_admin", method: "POST", path: "/v1/apikeys", body: key("admin", "workspace", "myapp", "other"), want: 403, wantCode: "scope_denied"},
		{name: "workspace admin cannot mint key for other blueprint's tenant", key: "ws_admin", method: "POST", path: "/v1/apikeys", body: key("read", "tenant", "alice"), want: 403, wantCode: "scope_denied"},
		{name: "workspace admin cannot mint project key", key: "ws_admin", method: "POST", path: "/v1/apikeys", body: key("read", "project"), want: 403, wantCode: "scope_denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			header := append([]string(nil), tc.header...)
			for i := range header {
				if header[i] == "$project" {
					header[i] = e.projectID
				}
			}
			k := keys[tc.key]
			if tc.key != "" && k == "" {
				k = tc.key
			}
			status, data := e.do(k, tc.method, tc.path, tc.body, header...)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, data)
			}
			if tc.wantCode != "" {
				if code, _ := errorOf(t, data); code != tc.wantCode {
					t.Fatalf("code %q, want %q: %s", code, tc.wantCode, data)
				}
			}
		})
	}
}

// TestListsFollowScope checks that list routes show only what a key reaches.
func TestListsFollowScope(t *testing.T) {
	e := newEnv(t, nil)
	wayneKey := e.tenant("myapp", "wayne")
	e.tenant("myapp", "bruce")
	e.tenant("other", "alice")
	wsKey := e.key("read", "workspace", "myapp")

	names := func(items []map[string]any, field string) []string {
		var out []string
		for _, it := range items {
			out = append(out, it[field].(string))
		}
		return out
	}
	tests := []struct {
		name  string
		key   string
		path  string
		field string
		want  []string
	}{
		{name: "project key sees all tenants", key: e.proxyPass, path: "/v1/tenants", field: "tenant_id", want: []string{"alice", "bruce", "wayne"}},
		{name: "blueprint filter", key: e.proxyPass, path: "/v1/tenants?blueprint=other", field: "tenant_id", want: []string{"alice"}},
		{name: "workspace key sees its blueprint's tenants", key: wsKey, path: "/v1/tenants", field: "tenant_id", want: []string{"bruce", "wayne"}},
		{name: "tenant key sees only its tenant", key: wayneKey, path: "/v1/tenants", field: "tenant_id", want: []string{"wayne"}},
		{name: "workspace key sees its workspace", key: wsKey, path: "/v1/workspaces", field: "name", want: []string{"myapp"}},
		{name: "project key sees all workspaces", key: e.proxyPass, path: "/v1/workspaces", field: "name", want: []string{"myapp", "other"}},
		{name: "tenant key sees only its own key", key: wayneKey, path: "/v1/apikeys", field: "scope_type", want: []string{"tenant"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := names(e.list(tc.key, tc.path), tc.field)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
	// The project key sees every key: its own, three tenant keys, the workspace key.
	if n := len(e.list(e.proxyPass, "/v1/apikeys")); n != 5 {
		t.Fatalf("project key lists %d keys, want 5", n)
	}
}

// TestRevokedKey checks that a revoked key stops working at once.
func TestRevokedKey(t *testing.T) {
	e := newEnv(t, nil)
	created := e.call(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"name": "ci", "role": "read", "scope_type": "project"}, 201)
	secret, id := created["key"].(string), created["id"].(string)
	e.call(secret, "GET", "/v1/workspaces/myapp", nil, 200)

	revoked := e.call(e.proxyPass, "DELETE", "/v1/apikeys/"+id, nil, 200)
	if revoked["status"] != "revoked" || revoked["raft_index"] == nil {
		t.Fatalf("revoke response %v", revoked)
	}
	status, data := e.do(secret, "GET", "/v1/workspaces/myapp", nil)
	if code, msg := errorOf(t, data); status != 401 || code != "unauthorized" || msg != "API key has been revoked" {
		t.Fatalf("revoked key: %d %s", status, data)
	}
	for _, k := range e.list(e.proxyPass, "/v1/apikeys") {
		if _, leaked := k["key"]; leaked {
			t.Fatalf("key list shows a secret: %v", k)
		}
		if k["id"] == id && k["status"] != "revoked" {
			t.Fatalf("revoked key listed as %v", k["status"])
		}
	}
	e.call(e.proxyPass, "DELETE", "/v1/apikeys/key_000000000000", nil, 404)
}

// TestCreateKeyInputs: names that would print terminal escapes are refused,
// repeated scope values are stored once, and a scope refusal reads well.
func TestCreateKeyInputs(t *testing.T) {
	e := newEnv(t, nil)
	e.tenant("myapp", "wayne")
	for _, name := range []string{"bad\x00name", "esc\x1b[2Jape", "bell\x07", "admin\u200b", "evil\u202egnp.exe", "bom\ufeff"} {
		status, body := e.do(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"name": name, "role": "read", "scope_type": "project"})
		if status != 400 || !strings.Contains(string(body), "without control characters") {
			t.Fatalf("name %q: %d %s", name, status, body)
		}
	}
	for _, name := range []string{"evil\x00\n\x1b[31mred", "tab\tname"} {
		status, body := e.do(adminKey, "POST", "/v1/projects", map[string]any{"name": name})
		if status != 400 || !strings.Contains(string(body), "project name must be UTF-8 text without control characters") {
			t.Fatalf("project name %q: %d %s", name, status, body)
		}
	}
	// Names are counted in characters, not bytes.
	e.call(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"name": strings.Repeat("é", 100), "role": "read", "scope_type": "project"}, 201)
	e.call(adminKey, "POST", "/v1/projects", map[string]any{"name": strings.Repeat("é", 100)}, 201)
	if status, body := e.do(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"name": strings.Repeat("é", 101), "role": "read", "scope_type": "project"}); status != 400 || !strings.Contains(string(body), "key name is longer than 100 characters") {
		t.Fatalf("a 101-character key name: %d %s", status, body)
	}
	if status, body := e.do(adminKey, "POST", "/v1/projects", map[string]any{"name": strings.Repeat("é", 101)}); status != 400 || !strings.Contains(string(body), "at most 100 characters") {
		t.Fatalf("a 101-character project name: %d %s", status, body)
	}
	out := e.call(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"name": "ok", "role": "admin", "scope_type": "tenant",
		"scope_values": []string{"wayne", "wayne", "wayne"}}, 201)
	if vals, _ := out["scope_values"].([]any); len(vals) != 1 || vals[0] != "wayne" {
		t.Fatalf("scope values %v, want [wayne]", out["scope_values"])
	}
	tenantKey := out["key"].(string)
	status, body := e.do(tenantKey, "POST", "/v1/apikeys", map[string]any{"role": "read", "scope_type": "project"})
	const want = "a tenant-scoped key [wayne] cannot create a project-scoped key: it would reach beyond its own scope"
	if status != 403 || !strings.Contains(string(body), want) {
		t.Fatalf("%d %s, want 403 %q", status, body, want)
	}
}

// TestCreateKeyWithoutRole: a key created without a role gets the caller's
// own, admin (only admins create keys), as the product documentation
// creates workspace keys (tdb apikeys
// create --scope-type workspace --scope-values myapp); a role that is not
// one of the three is still refused.
func TestCreateKeyWithoutRole(t *testing.T) {
	e := newEnv(t, nil)
	out := e.call(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"scope_type": "workspace", "scope_values": []string{"myapp"}}, 201)
	if out["role"] != "admin" {
		t.Fatalf("a project admin's key without a role: %v", out["role"])
	}
	if status, body := e.do(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"role": "owner", "scope_type": "project"}); status != 400 || !strings.Contains(string(body), `invalid role \"owner\": must be admin, write or read`) {
		t.Fatalf("role owner: %d %s", status, body)
	}
}

// TestScopeRefusalTexts: the HTTP refusals read as the wire proxy's, word
// for word, with several scope values too.
func TestScopeRefusalTexts(t *testing.T) {
	e := newEnv(t, nil)
	e.call(e.proxyPass, "POST", "/v1/workspaces", map[string]string{"name": "third"}, 201)
	e.tenant("myapp", "wayne")
	e.tenant("other", "alice")
	e.tenant("third", "bob")
	tests := []struct {
		key, method, path string
		body              any
		want              string
	}{
		{e.key("read", "workspace", "myapp", "other"), "GET", "/v1/workspaces/third", nil, `credential scoped to workspaces [myapp, other], attempted workspace "third"`},
		{e.key("read", "tenant", "wayne", "alice"), "GET", "/v1/tenants/bob", nil, `credential scoped to tenants [wayne, alice], attempted tenant "bob"`},
		{e.key("read", "tenant", "wayne"), "GET", "/v1/workspaces/myapp", nil, `credential scoped to tenants [wayne], attempted workspace "myapp"`},
		{e.key("read", "project"), "POST", "/v1/tenants/wayne/query", map[string]string{"sql": "SELECT 1"}, "credential is project-scoped; direct-tenant connections require a tenant-scoped or workspace-scoped key"},
	}
	for _, tc := range tests {
		status, data := e.do(tc.key, tc.method, tc.path, tc.body)
		if code, msg := errorOf(t, data); status != 403 || code != "scope_denied" || msg != tc.want {
			t.Errorf("%s %s: %d %s %q, want 403 scope_denied %q", tc.method, tc.path, status, code, msg, tc.want)
		}
	}
}

// compactingCluster removes every revoked key right after the revocation
// commits, as a leader compacting the state (fsm.CompactState) with a
// retention shorter than a request would.
type compactingCluster struct{ *apitest.Cluster }

func (c compactingCluster) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	v, index, err := c.Cluster.Apply(ctx, t, payload)
	if err == nil && t == fsm.CmdRevokeKey {
		soon := time.Now().Add(time.Hour)
		if _, _, cerr := c.Cluster.Apply(ctx, fsm.CmdCompactState, &fsm.CompactState{At: soon, KeysRevokedBefore: soon}); cerr != nil {
			return nil, 0, cerr
		}
	}
	return v, index, err
}

// TestRevokedKeyRemoved: a revocation answers with the revoked key even
// when the key was removed before the answer was written, and a removed
// key is refused as an unknown one and no longer listed.
func TestRevokedKeyRemoved(t *testing.T) {
	e := newBareEnv(t, nil, func(c httpapi.Cluster) http.Handler {
		return httpapi.New(compactingCluster{c.(*apitest.Cluster)}, t.Logf)
	})
	e.setUp()
	created := e.call(e.proxyPass, "POST", "/v1/apikeys", map[string]any{"name": "ci", "role": "read", "scope_type": "project"}, 201)
	secret, id := created["key"].(string), created["id"].(string)

	revoked := e.call(e.proxyPass, "DELETE", "/v1/apikeys/"+id, nil, 200)
	if revoked["status"] != "revoked" || revoked["revoked_at"] == nil || revoked["id"] != id {
		t.Fatalf("revoke response %v", revoked)
	}
	status, data := e.do(secret, "GET", "/v1/workspaces/myapp", nil)
	if code, msg := errorOf(t, data); status != 401 || code != "unauthorized" || msg != "invalid API key" {
		t.Fatalf("removed key: %d %s", status, data)
	}
	for _, k := range e.list(e.proxyPass, "/v1/apikeys") {
		if k["id"] == id {
			t.Fatalf("removed key listed: %v", k)
		}
	}
	e.call(e.proxyPass, "DELETE", "/v1/apikeys/"+id, nil, 404)
}
