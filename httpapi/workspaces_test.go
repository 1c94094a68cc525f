package httpapi_test

import (
	"context"
	"testing"

	"tdb/fsm"
)

func TestWorkspaces(t *testing.T) {
	e := newEnv(t, nil)
	ws := e.call(e.proxyPass, "POST", "/v1/workspaces", map[string]string{"name": "controlplane", "mode": "control"}, 201)
	if ws["mode"] != "control" || ws["database_type"] != "postgresql" || ws["database"] != "controlplane_workspace" || ws["raft_index"] == nil {
		t.Fatalf("workspace %v", ws)
	}
	e.call(e.proxyPass, "PATCH", "/v1/workspaces/myapp/settings", map[string]any{"max_rows_per_query": 100, "query_timeout_ms": 5000}, 200)
	s := e.call(e.proxyPass, "PATCH", "/v1/workspaces/myapp/settings", map[string]any{"max_connections": 3}, 200)
	want := map[string]any{"max_rows_per_query": 100.0, "query_timeout_ms": 5000.0, "max_connections": 3.0}
	for k, v := range want {
		if s[k] != v {
			t.Fatalf("settings %v, want %v", s, want)
		}
	}
	if s["raft_index"] == nil {
		t.Fatalf("settings response without raft_index: %v", s)
	}
	got := e.call(e.proxyPass, "GET", "/v1/workspaces/myapp/settings", nil, 200)
	if got["max_connections"] != 3.0 || got["max_rows_per_query"] != 100.0 {
		t.Fatalf("settings %v", got)
	}
}

func TestBlueprintVersions(t *testing.T) {
	e := newEnv(t, nil)
	if v := e.list(e.proxyPass, "/v1/blueprints/myapp/versions"); len(v) != 0 {
		t.Fatalf("versions before DDL: %v", v)
	}
	for _, stmts := range [][]string{{"CREATE TABLE a (id int)"}, {"ALTER TABLE a ADD b int", "CREATE INDEX ON a (b)"}} {
		if _, _, err := e.c.Apply(context.Background(), fsm.CmdAddBlueprintVersion, fsm.AddBlueprintVersion{
			ProjectID: e.projectID, Workspace: "myapp", Statements: stmts, Checksum: "x",
		}); err != nil {
			t.Fatal(err)
		}
	}
	v := e.list(e.proxyPass, "/v1/blueprints/myapp/versions")
	if len(v) != 2 || v[1]["version"] != 2.0 || v[1]["ddl_count"] != 2.0 || len(v[1]["statements"].([]any)) != 2 {
		t.Fatalf("versions %v", v)
	}
}
