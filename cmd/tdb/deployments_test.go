package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/httpapi"
	"tdb/httpapi/apitest"
)

// fakeDeployer stands in for the leader's deployer over the fake cluster: it
// finishes every pending tenant of in-progress deployments, failing those
// that fail(deployment, tenant) names.
func fakeDeployer(ctx context.Context, c *apitest.Cluster, fail func(id, tenant string) bool) {
	for {
		changed := c.FSM().Changed()
		var todo []fsm.SetDeploymentResult
		c.FSM().View(func(s *fsm.State) {
			for id, d := range s.Deployments {
				if d.Status != fsm.DeploymentInProgress {
					continue
				}
				for _, r := range d.Results {
					if r.Status != fsm.TenantPending {
						continue
					}
					res := fsm.SetDeploymentResult{ID: id, Tenant: r.Tenant, Status: fsm.TenantDone, FromVersion: 0, Version: d.TargetVersion, DurationMs: 7}
					if fail(id, r.Tenant) {
						res.Status, res.Version, res.Error = fsm.TenantFailed, 0, `blueprint version 1: ERROR: relation "a" already exists (SQLSTATE 42P07)`
					}
					todo = append(todo, res)
				}
			}
		})
		for _, res := range todo {
			_, _, _ = c.Apply(ctx, fsm.CmdSetDeploymentResult, res)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestDeploymentCommands(t *testing.T) {
	for _, v := range []string{"TDB_API_URL", "TDB_API_KEY", "TDB_ADMIN_KEY", "TDB_PROJECT_ID"} {
		t.Setenv(v, "")
	}
	c := apitest.New(testAdminKey)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { c.Provision(ctx, apitest.Ready); done <- struct{}{} }()
	first := ""
	go func() {
		fakeDeployer(ctx, c, func(id, tenant string) bool {
			if first == "" {
				first = id
			}
			return id == first && tenant == "globex"
		})
		done <- struct{}{}
	}()
	srv := httptest.NewServer(httpapi.New(c, t.Logf))
	t.Cleanup(func() { srv.Close(); cancel(); <-done; <-done })

	admin := []string{"--api-url", srv.URL, "--admin-key", testAdminKey}
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := tdb(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	mustRun(append(admin, "backends", "add", "--name", "pg1", "--url", "postgres://postgres:pw@db1/postgres")...)
	var project struct {
		ProxyPassword string `json:"proxy_password"`
		ProjectID     string `json:"project_id"`
	}
	if err := json.Unmarshal([]byte(mustRun(append(admin, "--json", "projects", "create", "--name", "demo")...)), &project); err != nil {
		t.Fatal(err)
	}
	user := []string{"--api-url", srv.URL, "--api-key", project.ProxyPassword}
	mustRun(append(user, "workspaces", "create", "--name", "myapp")...)
	mustRun(append(user, "tenants", "create", "--blueprint", "myapp", "--name", "wayne")...)
	mustRun(append(user, "tenants", "create", "--blueprint", "myapp", "--name", "globex")...)
	if _, _, err := c.Apply(ctx, fsm.CmdAddBlueprintVersion, fsm.AddBlueprintVersion{
		ProjectID: project.ProjectID, Workspace: "myapp", Statements: []string{"CREATE TABLE a (id int)"},
	}); err != nil {
		t.Fatal(err)
	}

	// --all is required.
	code, out, errOut := tdb(append(user, "deployments", "create", "--blueprint", "myapp")...)
	if code != 1 || out != "" || errOut != "tdb: deployments go to every tenant of the blueprint: pass --all\n" {
		t.Fatalf("without --all: %d %q %q", code, out, errOut)
	}

	// A failed deployment: the JSON document on stdout, one error line on
	// stderr, exit 1.
	code, out, errOut = tdb(append(user, "--json", "deployments", "create", "--blueprint", "myapp", "--all", "--wait", "--poll", "20ms")...)
	var d struct {
		ID               string `json:"id"`
		Status           string `json:"status"`
		TenantsTotal     int    `json:"tenants_total"`
		TenantsCompleted int    `json:"tenants_completed"`
		TenantsFailed    int    `json:"tenants_failed"`
		Results          []struct {
			TenantID   string `json:"tenant_id"`
			Status     string `json:"status"`
			Error      string `json:"error"`
			DurationMs int64  `json:"duration_ms"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if code != 1 || d.Status != "failed" || d.TenantsTotal != 2 || d.TenantsCompleted != 1 || d.TenantsFailed != 1 ||
		d.Results[0].TenantID != "globex" || !strings.Contains(d.Results[0].Error, "already exists") || d.Results[1].DurationMs != 7 {
		t.Fatalf("exit %d, deployment %+v", code, d)
	}
	wantErr := "tdb: deployment " + d.ID + " failed: 1 of 2 tenants failed (tdb deployments status " + d.ID + ")\n"
	if errOut != wantErr {
		t.Fatalf("stderr %q, want %q", errOut, wantErr)
	}

	out = mustRun(append(user, "deployments", "status", d.ID)...)
	for _, s := range []string{"status:", "failed", "2 total, 1 completed, 1 failed", "globex", "already exists", "wayne", "0→1"} {
		if !strings.Contains(out, s) {
			t.Fatalf("status lacks %q:\n%s", s, out)
		}
	}

	// The rerun succeeds; progress lines (stderr is not a terminal) go to stderr.
	code, out, errOut = tdb(append(user, "deployments", "create", "--blueprint", "myapp", "--all", "--wait", "--poll", "20ms")...)
	if code != 0 || !strings.Contains(out, "completed") || !regexp.MustCompile(`deployment dep_[0-9a-f]{12}: 2/2 tenants finished\n$`).MatchString(errOut) {
		t.Fatalf("rerun: exit %d stdout %q stderr %q", code, out, errOut)
	}
	out = mustRun(append(user, "deployments", "list")...)
	if strings.Count(out, "dep_") != 2 || !strings.Contains(out, "completed") || !strings.Contains(out, "failed") {
		t.Fatalf("list:\n%s", out)
	}
}

func TestProgressBar(t *testing.T) {
	var buf strings.Builder
	p := &progress{w: &buf, tty: true}
	p.show(deploymentOut{ID: "dep_1", TenantsTotal: 50, TenantsCompleted: 24, TenantsFailed: 1})
	p.show(deploymentOut{ID: "dep_1", TenantsTotal: 50, TenantsCompleted: 49, TenantsFailed: 1})
	p.end()
	want := "\r[###############               ] 25/50, 1 failed " +
		"\r[##############################] 50/50, 1 failed \n"
	if buf.String() != want {
		t.Fatalf("bar %q, want %q", buf.String(), want)
	}
}
