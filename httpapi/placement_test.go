package httpapi_test

import (
	"strings"
	"testing"
)

// TestPlacement checks that new databases go to the least loaded backend, ties
// broken by name.
func TestPlacement(t *testing.T) {
	e := newBareEnv(t, nil, nil)
	p := e.call(adminKey, "POST", "/v1/projects", map[string]string{"name": "demo"}, 201)
	key, pid := p["proxy_password"].(string), p["project_id"].(string)

	status, data := e.do(key, "POST", "/v1/workspaces", map[string]string{"name": "early"})
	if code, msg := errorOf(t, data); status != 503 || code != "unavailable" || !strings.Contains(msg, "no backend registered") {
		t.Fatalf("without backends: %d %s", status, data)
	}
	// Non-PostgreSQL workspaces need no backend.
	e.call(key, "POST", "/v1/workspaces", map[string]string{"name": "cache", "database": "redis"}, 201)

	e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": "b", "url": "postgres://postgres@b/postgres"}, 201)
	steps := []struct {
		name      string
		addBefore string
		workspace string
		want      string
	}{
		{name: "only backend", workspace: "w1", want: "b"},
		{name: "empty backend wins", addBefore: "c", workspace: "w2", want: "c"},
		{name: "tie goes to first name", addBefore: "a", workspace: "w3", want: "a"},
		{name: "three-way tie goes to first name", workspace: "w4", want: "a"},
		{name: "then the next least loaded", workspace: "w5", want: "b"},
	}
	for _, st := range steps {
		if st.addBefore != "" {
			e.call(adminKey, "POST", "/v1/backends", map[string]string{"name": st.addBefore, "url": "postgres://postgres@" + st.addBefore + "/postgres"}, 201)
		}
		e.call(key, "POST", "/v1/workspaces", map[string]string{"name": st.workspace}, 201)
		if got := e.database(e.physical(pid, st.workspace+"_workspace")).Backend; got != st.want {
			t.Fatalf("%s: %s placed on %q, want %q", st.name, st.workspace, got, st.want)
		}
	}
}
