package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tdb/httpapi"
	"tdb/httpapi/apitest"
	"tdb/querylog"
)

func TestLogsCommand(t *testing.T) {
	for _, v := range []string{"TDB_API_URL", "TDB_API_KEY", "TDB_ADMIN_KEY", "TDB_PROJECT_ID"} {
		t.Setenv(v, "")
	}
	c := apitest.WithQueryLog{Cluster: apitest.New(testAdminKey), Log: querylog.New(100, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Provision(ctx, apitest.Ready) }()
	srv := httptest.NewServer(httpapi.New(c, t.Logf))
	t.Cleanup(func() { srv.Close(); cancel(); <-done })

	code, out, errOut := tdb("--api-url", srv.URL, "--admin-key", testAdminKey, "--json", "projects", "create", "--name", "demo")
	if code != 0 {
		t.Fatalf("projects create: %s", errOut)
	}
	var project struct {
		ProjectID     string `json:"project_id"`
		ProxyPassword string `json:"proxy_password"`
	}
	_ = json.Unmarshal([]byte(out), &project)
	now := time.Now().UTC()
	for _, e := range []querylog.Entry{
		{Time: now.Add(-2 * time.Hour), Project: project.ProjectID, Database: "myapp__wayne", Workspace: "myapp", Tenant: "wayne", Statement: "SELECT old"},
		{Time: now, Project: project.ProjectID, Database: "myapp__wayne", Workspace: "myapp", Tenant: "wayne", Statement: "SELECT\n  1", SQLState: "00000", Rows: 1, ClientIP: "10.1.2.3"},
		{Time: now, Project: project.ProjectID, Database: "myapp__globex", Workspace: "myapp", Tenant: "globex", Statement: "SELECT 2", SQLState: "00000"},
		{Time: now, Project: "tdb_other000", Database: "myapp__wayne", Workspace: "myapp", Tenant: "wayne", Statement: "SELECT secret"},
	} {
		c.Log.Add(e)
	}
	user := []string{"--api-url", srv.URL, "--api-key", project.ProxyPassword}

	code, out, errOut = tdb(append(user, "logs", "--tenant", "wayne")...)
	if code != 0 {
		t.Fatalf("logs: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "SELECT 1") || !strings.Contains(out, "10.1.2.3") || strings.Contains(out, "SELECT 2") ||
		strings.Contains(out, "SELECT old") || strings.Contains(out, "secret") {
		t.Fatalf("logs --tenant wayne printed:\n%s", out)
	}
	code, out, errOut = tdb(append(user, "--json", "logs", "--since", "3h")...)
	if code != 0 {
		t.Fatalf("logs --json: exit %d: %s", code, errOut)
	}
	var doc struct {
		Entries []querylog.Entry `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Entries) != 3 {
		t.Fatalf("logs --json --since 3h: %v, %d entries:\n%s", err, len(doc.Entries), out)
	}
	if code, _, errOut = tdb(append(user, "logs", "--since", "soon")...); code == 0 || !strings.Contains(errOut, "since") {
		t.Fatalf("bad --since: exit %d, %q", code, errOut)
	}
	// A --limit out of range is refused, as the API refuses it, rather than
	// taken for the default.
	for _, limit := range []string{"0", "-1", "10001"} {
		if code, _, errOut = tdb(append(user, "logs", "--limit", limit)...); code == 0 || !strings.Contains(errOut, "limit must be") {
			t.Fatalf("logs --limit %s: exit %d, %q", limit, code, errOut)
		}
	}
	if code, out, errOut = tdb(append(user, "--json", "logs", "--since", "3h", "--limit", "1")...); code != 0 {
		t.Fatalf("logs --limit 1: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Entries) != 1 {
		t.Fatalf("logs --limit 1: %v, %d entries:\n%s", err, len(doc.Entries), out)
	}
}
