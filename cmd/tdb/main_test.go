package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"tdb/httpapi"
	"tdb/httpapi/apitest"
)

const testAdminKey = "operator-secret"

// startAPI serves the control plane over a fake cluster whose databases
// provision at once.
func startAPI(t *testing.T) string {
	t.Helper()
	for _, v := range []string{"TDB_API_URL", "TDB_API_KEY", "TDB_ADMIN_KEY", "TDB_PROJECT_ID"} {
		t.Setenv(v, "")
	}
	c := apitest.New(testAdminKey)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Provision(ctx, apitest.Ready) }()
	srv := httptest.NewServer(httpapi.New(c, t.Logf))
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return srv.URL
}

// tdb runs one command line and returns its exit status, stdout and stderr.
func tdb(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestClientCommands drives a project through the CLI as a script would.
func TestClientCommands(t *testing.T) {
	apiURL := startAPI(t)
	code, out, errOut := tdb("--api-url", apiURL, "--admin-key", testAdminKey, "--json", "projects", "create", "--name", "demo")
	if code != 0 {
		t.Fatalf("projects create: exit %d: %s", code, errOut)
	}
	var project struct {
		ProjectID     string `json:"project_id"`
		ProxyPassword string `json:"proxy_password"`
	}
	if err := json.Unmarshal([]byte(out), &project); err != nil {
		t.Fatalf("projects create --json printed %q: %v", out, err)
	}
	if !regexp.MustCompile(`^tdb_[0-9a-f]{8}$`).MatchString(project.ProjectID) || !strings.HasPrefix(project.ProxyPassword, "tdb_") {
		t.Fatalf("project %+v", project)
	}

	admin := []string{"--api-url", apiURL, "--admin-key", testAdminKey}
	user := []string{"--api-url", apiURL, "--api-key", project.ProxyPassword}
	steps := []struct {
		name       string
		env        map[string]string
		args       []string
		wantExit   int
		wantOut    []string // substrings of stdout
		wantErr    string   // exact stderr
		checkJSON  func(t *testing.T, doc map[string]any)
		jsonOutput bool
	}{
		{name: "add backend", args: append(admin, "backends", "add", "--name", "pg1", "--url", "postgres://postgres:pw@db1/postgres"),
			wantOut: []string{"name:", "pg1", "postgres://postgres:xxxxx@db1/postgres"}},
		{name: "backends list redacts", args: append(admin, "backends", "list"), wantOut: []string{"NAME", "xxxxx"}},
		{name: "add a second backend", args: append(admin, "backends", "add", "--name", "pg9", "--url", "postgres://postgres:pw@db9/postgres"),
			wantOut: []string{"pg9"}},
		{name: "remove it", args: append(admin, "backends", "remove", "pg9"), wantOut: []string{"name:", "pg9", "forgotten databases:", "0"}},
		{name: "remove an unknown backend", args: append(admin, "backends", "remove", "pg9"), wantExit: 1,
			wantErr: "tdb: backend \"pg9\" not found (not_found)\n"},
		{name: "create workspace", args: append(user, "workspaces", "create", "--name", "myapp"), wantOut: []string{"myapp_workspace", "tenant"}},
		{name: "create tenant", args: append(user, "--json", "tenants", "create", "--blueprint", "myapp", "--name", "wayne"),
			jsonOutput: true, checkJSON: func(t *testing.T, doc map[string]any) {
				if doc["tenant_id"] != "wayne" || doc["database"] != "myapp__wayne" || doc["status"] != "ready" || doc["raft_index"] == nil {
					t.Fatalf("tenant %v", doc)
				}
				conn := `^postgresql://` + project.ProjectID + `:tdb_[0-9a-f]{16}@127\.0\.0\.1:5432/myapp__wayne\?sslmode=require$`
				if !regexp.MustCompile(conn).MatchString(doc["connection_string"].(string)) {
					t.Fatalf("connection_string %v", doc["connection_string"])
				}
			}},
		{name: "duplicate tenant", args: append(user, "tenants", "create", "--blueprint", "myapp", "--name", "wayne"),
			wantExit: 1, wantErr: "tdb: tenant \"wayne\" already exists (conflict)\n"},
		{name: "bad tenant name", args: append(user, "tenants", "create", "--blueprint", "myapp", "--name", "Bad__Name"),
			wantExit: 1, wantErr: "tdb: invalid tenant name \"Bad__Name\": names must match [a-z][a-z0-9_]{0,39}, must not contain \"__\" and must not end in \"_\" (bad_request)\n"},
		{name: "tenants list", args: append(user, "tenants", "list"), wantOut: []string{"TENANT", "wayne", "myapp__wayne", "ready"}},
		{name: "workspace settings change", args: append(user, "workspaces", "settings", "myapp", "--max-connections", "5"),
			wantOut: []string{"max_connections:", "5"}},
		{name: "workspace settings show", args: append(user, "--json", "workspaces", "settings", "myapp"), jsonOutput: true,
			checkJSON: func(t *testing.T, doc map[string]any) {
				if doc["max_connections"] != 5.0 || doc["max_rows_per_query"] != 0.0 {
					t.Fatalf("settings %v", doc)
				}
			}},
		{name: "read key", args: append(user, "--json", "apikeys", "create", "--role", "read", "--scope-type", "tenant", "--scope-values", "wayne"),
			jsonOutput: true, checkJSON: func(t *testing.T, doc map[string]any) {
				if !strings.HasPrefix(doc["key"].(string), "sk_") || doc["role"] != "read" || doc["scope_type"] != "tenant" {
					t.Fatalf("key %v", doc)
				}
			}},
		{name: "cluster settings", args: append(admin, "cluster", "settings", "--ban", "2m", "--max-ban", "1h"),
			wantOut: []string{"ban:", "2m0s", "max_ban:", "1h0m0s"}},
		{name: "operator command without admin key", args: append(user, "backends", "list"),
			wantExit: 1, wantErr: "tdb: only the cluster operator's admin key can list backends (permission_denied)\n"},
		{name: "quiet prints nothing", args: append(user, "--quiet", "tenants", "get", "wayne")},
		{name: "unknown tenant", args: append(user, "tenants", "get", "nobody"),
			wantExit: 1, wantErr: "tdb: tenant \"nobody\" not found (not_found)\n"},
		{name: "admin key acting in a project", args: append(admin, "--project", project.ProjectID, "tenants", "get", "wayne"),
			wantOut: []string{"tenant_id:", "wayne"}},
		{name: "keys from the environment", env: map[string]string{"TDB_API_URL": apiURL, "TDB_API_KEY": project.ProxyPassword, "TDB_ADMIN_KEY": testAdminKey},
			args: []string{"tenants", "get", "wayne"}, wantOut: []string{"tenant_id:", "wayne"}},
		{name: "an explicit --api-key wins over TDB_ADMIN_KEY", env: map[string]string{"TDB_API_URL": apiURL, "TDB_ADMIN_KEY": testAdminKey},
			args:     []string{"--api-key", project.ProxyPassword, "backends", "list"},
			wantExit: 1, wantErr: "tdb: only the cluster operator's admin key can list backends (permission_denied)\n"},
		{name: "unknown subcommand", args: append(user, "tenants", "delet", "wayne"),
			wantExit: 1, wantErr: "tdb: unknown command \"delet\" for \"tdb tenants\"\n"},
		{name: "unknown subcommand, nested", args: append(admin, "cluster", "stats"),
			wantExit: 1, wantErr: "tdb: unknown command \"stats\" for \"tdb cluster\"\n"},
		{name: "unreachable API", args: []string{"--api-url", "http://127.0.0.1:1", "--api-key", "x", "tenants", "list"},
			wantExit: 1},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			for k, v := range st.env {
				t.Setenv(k, v)
			}
			code, out, errOut := tdb(st.args...)
			if code != st.wantExit {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, st.wantExit, out, errOut)
			}
			if st.wantExit != 0 {
				if out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "tdb: ") {
					t.Fatalf("failure output: stdout %q stderr %q", out, errOut)
				}
				if st.wantErr != "" && errOut != st.wantErr {
					t.Fatalf("stderr %q, want %q", errOut, st.wantErr)
				}
				return
			}
			if errOut != "" {
				t.Fatalf("stderr %q", errOut)
			}
			for _, s := range st.wantOut {
				if !strings.Contains(out, s) {
					t.Fatalf("stdout lacks %q:\n%s", s, out)
				}
			}
			if len(st.wantOut) == 0 && !st.jsonOutput && out != "" {
				t.Fatalf("stdout %q, want nothing", out)
			}
			if st.jsonOutput {
				var doc map[string]any
				if err := json.Unmarshal([]byte(out), &doc); err != nil {
					t.Fatalf("--json printed %q: %v", out, err)
				}
				st.checkJSON(t, doc)
			}
		})
	}
}

// TestRelayLoopsFlag: a loop count, niceness or GC percentage out of range stops both node
// commands while the flags are parsed, before a data directory or
// PostgreSQL is made.
func TestRelayLoopsFlag(t *testing.T) {
	for _, cmd := range []string{"server", "dev"} {
		for _, n := range []string{"-1", "65", "two", "1.5"} {
			dir := t.TempDir() + "/data"
			code, _, stderr := tdb(cmd, "--data-dir", dir, "--relay-loops", n)
			if code == 0 || !strings.Contains(stderr, `invalid argument "`+n+`" for "--relay-loops" flag: must be a whole number from 0 (one loop per 4 of --procs) to 64`) {
				t.Errorf("tdb %s --relay-loops %s: exit %d, stderr %q", cmd, n, code, stderr)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("tdb %s --relay-loops %s made %s", cmd, n, dir)
			}
		}
		for _, n := range []string{"-1", "10001", "half"} {
			code, _, stderr := tdb(cmd, "--data-dir", t.TempDir()+"/data", "--gc-percent", n)
			if code == 0 || !strings.Contains(stderr, `invalid argument "`+n+`" for "--gc-percent" flag: must be a whole number from 0 (GOGC, else 50) to 10000`) {
				t.Errorf("tdb %s --gc-percent %s: exit %d, stderr %q", cmd, n, code, stderr)
			}
		}
		for _, n := range []string{"-21", "20", "low"} {
			code, _, stderr := tdb(cmd, "--data-dir", t.TempDir()+"/data", "--relay-nice", n)
			if code == 0 || !strings.Contains(stderr, `invalid argument "`+n+`" for "--relay-nice" flag: must be a whole number from -20 to 19`) {
				t.Errorf("tdb %s --relay-nice %s: exit %d, stderr %q", cmd, n, code, stderr)
			}
		}
	}
}

func TestClusterColumn(t *testing.T) {
	for _, c := range []struct{ node, cluster, want string }{
		{"", "", "-"}, {"ab", "", "-"}, {"", "ab", "-"}, {"ab", "ab", "same"}, {"cd", "ab", "other cd"},
	} {
		if got := clusterColumn(c.node, c.cluster); got != c.want {
			t.Errorf("clusterColumn(%q, %q) = %q, want %q", c.node, c.cluster, got, c.want)
		}
	}
}
