package httpapi_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
	"tdb/httpapi"
)

// TestErrors covers validation (400), duplicates (409) and unknowns (404).
func TestErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.tenant("myapp", "wayne")
	tests := []struct {
		name     string
		key      string
		method   string
		path     string
		body     any
		want     int
		wantText string // in the message
	}{
		{name: "upper-case workspace", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "MyApp"}, want: 400, wantText: fsm.NameRule},
		{name: "double underscore workspace", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "my__app"}, want: 400, wantText: fsm.NameRule},
		{name: "workspace name ending in an underscore", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "a_"}, want: 400, wantText: fsm.NameRule},
		{name: "tenant name ending in an underscore", method: "POST", path: "/v1/tenants", body: map[string]string{"name": "bob_", "blueprint": "myapp"}, want: 400, wantText: fsm.NameRule},
		{name: "query timeout past its bound", method: "PATCH", path: "/v1/workspaces/myapp/settings", body: map[string]int64{"query_timeout_ms": 10000000000000}, want: 400, wantText: "query_timeout_ms must be at most 2147483647"},
		{name: "ban past its bound", key: adminKey, method: "PATCH", path: "/v1/cluster/settings", body: map[string]int64{"ban_sec": 9223372037, "max_ban_sec": 9223372037}, want: 400, wantText: "ban_sec must be at most 31622400"},
		{name: "longest ban shorter than the first", key: adminKey, method: "PATCH", path: "/v1/cluster/settings", body: map[string]int64{"ban_sec": 600, "max_ban_sec": 60}, want: 400, wantText: "max_ban_sec (60) must not be less than ban_sec (600)"},
		{name: "too many query params", key: e.key("write", "workspace", "myapp"), method: "POST", path: "/v1/tenants/wayne/query", body: map[string]any{"sql": "SELECT 1", "params": make([]int, 70000)}, want: 400, wantText: "at most 65535 params, got 70000"},
		{name: "empty workspace name", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": ""}, want: 400, wantText: fsm.NameRule},
		{name: "digit-first tenant", method: "POST", path: "/v1/tenants", body: map[string]string{"name": "9lives", "blueprint": "myapp"}, want: 400, wantText: fsm.NameRule},
		{name: "long tenant", method: "POST", path: "/v1/tenants", body: map[string]string{"name": "a123456789012345678901234567890123456789x", "blueprint": "myapp"}, want: 400, wantText: fsm.NameRule},
		{name: "bad blueprint name", method: "POST", path: "/v1/tenants", body: map[string]string{"name": "ok", "blueprint": "My-App"}, want: 400, wantText: "invalid blueprint name"},
		{name: "bad mode", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "w1", "mode": "weird"}, want: 400, wantText: "invalid mode"},
		{name: "bad database type", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "w1", "database": "oracle"}, want: 400, wantText: "invalid database"},
		{name: "unknown field", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "w1", "colour": "red"}, want: 400, wantText: `unknown field "colour"`},
		{name: "empty body", method: "POST", path: "/v1/workspaces", body: "", want: 400, wantText: "empty"},
		{name: "not json", method: "POST", path: "/v1/workspaces", body: "{name:", want: 400, wantText: "invalid JSON"},
		{name: "two documents", method: "POST", path: "/v1/workspaces", body: `{"name":"w1"}{}`, want: 400, wantText: "more than one"},
		{name: "field given twice", method: "POST", path: "/v1/tenants", body: `{"name":"a","blueprint":"myapp","name":"b"}`, want: 400, wantText: `field "name" is given more than once`},
		{name: "field given twice in another case", method: "POST", path: "/v1/tenants", body: `{"name":"a","blueprint":"myapp","NAME":"b"}`, want: 400, wantText: `field "NAME" is given more than once`},
		{name: "field given twice with a long s", method: "POST", path: "/v1/apikeys", body: `{"role":"read","scope_type":"project","\u017fcope_type":"project"}`, want: 400, wantText: "more than once"},
		{name: "oversized body", method: "POST", path: "/v1/workspaces", body: `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, want: 413, wantText: "larger than"},
		{name: "bad role", method: "POST", path: "/v1/apikeys", body: map[string]any{"role": "root", "scope_type": "project"}, want: 400, wantText: "invalid role"},
		{name: "bad scope type", method: "POST", path: "/v1/apikeys", body: map[string]any{"role": "read", "scope_type": "galaxy"}, want: 400, wantText: "invalid scope type"},
		{name: "workspace key without values", method: "POST", path: "/v1/apikeys", body: map[string]any{"role": "read", "scope_type": "workspace"}, want: 400, wantText: "needs scope values"},
		{name: "negative setting", method: "PATCH", path: "/v1/workspaces/myapp/settings", body: map[string]any{"max_rows_per_query": -1}, want: 400, wantText: "max_rows_per_query"},
		{name: "bad backend url", key: adminKey, method: "POST", path: "/v1/backends", body: map[string]string{"name": "pg2", "url": "mysql://h/db"}, want: 400, wantText: "invalid backend url"},
		{name: "bad cluster setting", key: adminKey, method: "PATCH", path: "/v1/cluster/settings", body: map[string]any{"ban_sec": 0}, want: 400, wantText: "ban_sec"},

		{name: "duplicate workspace", method: "POST", path: "/v1/workspaces", body: map[string]string{"name": "myapp"}, want: 409, wantText: "already exists"},
		{name: "duplicate tenant", method: "POST", path: "/v1/tenants", body: map[string]string{"name": "wayne", "blueprint": "other"}, want: 409, wantText: `tenant "wayne" already exists`},
		{name: "duplicate backend", key: adminKey, method: "POST", path: "/v1/backends", body: map[string]string{"name": "pg1", "url": "postgres://h/postgres"}, want: 409, wantText: "already exists"},
		{name: "duplicate project", key: adminKey, method: "POST", path: "/v1/projects", body: map[string]string{"name": "demo"}, want: 409, wantText: "already exists"},

		{name: "unknown tenant", method: "GET", path: "/v1/tenants/nobody", want: 404, wantText: `tenant "nobody" not found`},
		{name: "delete unknown tenant", method: "DELETE", path: "/v1/tenants/nobody", want: 404},
		{name: "unknown workspace", method: "GET", path: "/v1/workspaces/nope", want: 404},
		{name: "unknown blueprint", method: "POST", path: "/v1/tenants", body: map[string]string{"name": "t1", "blueprint": "nope"}, want: 404, wantText: `blueprint "nope" not found`},
		{name: "unknown blueprint versions", method: "GET", path: "/v1/blueprints/nope/versions", want: 404},
		{name: "key for unknown tenant", method: "POST", path: "/v1/apikeys", body: map[string]any{"role": "read", "scope_type": "tenant", "scope_values": []string{"nobody"}}, want: 404},
		{name: "unknown key", method: "DELETE", path: "/v1/apikeys/key_000000000000", want: 404, wantText: `key "key_000000000000" not found`},
		// The id is quoted: a terminal printing the message sees no escape.
		{name: "unknown key with an escape", method: "DELETE", path: "/v1/apikeys/%1b%5b2J", want: 404, wantText: `key "\x1b[2J" not found`},
		{name: "unknown route", method: "GET", path: "/v1/nothing", want: 404},
		{name: "unknown route with an escape", method: "GET", path: "/v1/%1b%5b2J", want: 404, wantText: "no route GET /v1/%1b%5b2J"},
		{name: "wrong method with an escape", method: "PUT", path: "/v1/tenants/%1b%5b2J", want: 405, wantText: "method PUT not allowed on /v1/tenants/%1b%5b2J"},
		{name: "wrong method", method: "PUT", path: "/v1/tenants", want: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == "" {
				key = e.proxyPass
			}
			status, data := e.do(key, tc.method, tc.path, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %.300s", status, tc.want, data)
			}
			_, msg := errorOf(t, data)
			if !regexp.MustCompile(regexp.QuoteMeta(tc.wantText)).MatchString(msg) {
				t.Fatalf("message %q does not contain %q", msg, tc.wantText)
			}
		})
	}
}

// TestApplyFailures checks that a command the cluster cannot commit is a 503.
func TestApplyFailures(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name     string
		err      error
		wantCode string
	}{
		{name: "leader lost", err: errors.Mark(errors.New("leadership lost"), httpapi.ErrNotLeader), wantCode: "not_leader"},
		{name: "raft timeout", err: errors.New("timed out enqueuing operation"), wantCode: "unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.c.FailApply(func(fsm.CommandType) error { return tc.err })
			defer e.c.FailApply(nil)
			status, data := e.do(e.proxyPass, "POST", "/v1/workspaces", map[string]string{"name": "w1"})
			if code, _ := errorOf(t, data); status != 503 || code != tc.wantCode {
				t.Fatalf("got %d %s", status, data)
			}
		})
	}
}
