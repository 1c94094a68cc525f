package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"tdb/httpapi"
	"tdb/httpapi/apitest"
	"tdb/querylog"
)

// TestTenantKeyLogsFollowTheTenantNotTheName: a tenant key's log shows its
// tenant's statements, not those of an earlier tenant that had the name
// (in another blueprint, or in its own before the name was reused).
func TestTenantKeyLogsFollowTheTenantNotTheName(t *testing.T) {
	ql := querylog.New(100, nil)
	t.Cleanup(ql.Close)
	e := newBareEnv(t, nil, func(c httpapi.Cluster) http.Handler {
		return httpapi.New(apitest.WithQueryLog{Cluster: c.(*apitest.Cluster), Log: ql}, t.Logf)
	})
	e.setUp()
	entry := func(blueprint, statement string) {
		ql.Add(querylog.Entry{Time: time.Now(), Project: e.projectID, Database: blueprint + "__wayne", Workspace: blueprint, Tenant: "wayne", Statement: statement})
	}
	seen := func(key string) (statements []string) {
		status, body := e.do(key, "GET", "/v1/logs", nil)
		var out httpapi.Logs
		if err := json.Unmarshal(body, &out); status != 200 || err != nil {
			t.Fatalf("logs: %d %s", status, body)
		}
		for _, en := range out.Entries {
			statements = append(statements, en.Statement)
		}
		return statements
	}
	recreate := func(blueprint string) string {
		e.call(e.proxyPass, "DELETE", "/v1/tenants/wayne", nil, 202)
		e.removeTenantDB("wayne")
		time.Sleep(2 * time.Millisecond) // the next tenant is made strictly after the entries above
		return e.tenant(blueprint, "wayne")
	}

	e.tenant("myapp", "wayne")
	entry("myapp", "the first wayne's")
	key := recreate("other")
	entry("other", "the second wayne's")
	if got := seen(key); len(got) != 1 || got[0] != "the second wayne's" {
		t.Fatalf("the second wayne's key sees %q", got)
	}
	key = recreate("other")
	entry("other", "the third wayne's")
	if got := seen(key); len(got) != 1 || got[0] != "the third wayne's" {
		t.Fatalf("the third wayne's key sees %q", got)
	}
	// The project key sees them all.
	if got := seen(e.proxyPass); len(got) != 3 {
		t.Fatalf("the project key sees %q", got)
	}
}
