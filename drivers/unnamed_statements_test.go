package drivers_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/internal/testnode"
)

// TestUnnamedStatements: libpq's PQprepare and PQexecPrepared with the
// unnamed statement (ruby-pg's prepare("") and exec_prepared("")) prepare
// it in one round trip and bind it in the next. The proxy's own statements between the two (the capture lock in a
// tenant workspace, the row guard's BEGIN and COMMIT with
// max_rows_per_query set) must leave that statement as it was: PostgreSQL
// drops it at every simple Query, and the Bind then failed with 26000.
func TestUnnamedStatements(t *testing.T) {
	needRuby(t, nil, &row{name: "ruby pg"})
	e := testnode.Start(t)
	key := e.CreateTenant(t, "unnamed")
	e.WaitReady(t)
	accountsTable(t, e, "unnamed")
	e.MustDo(t, "PATCH", "/v1/workspaces/myapp/settings", e.ProxyPassword, "", map[string]any{"max_rows_per_query": 100}, nil)

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "TDB_") {
			env = append(env, kv)
		}
	}
	// Plain TCP: a tenant's session is relayed by the event loop.
	env = append(env,
		"TDB_URL="+e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"),
		"TDB_TENANT_URL="+e.ConnString(key, fsm.TenantDatabase("myapp", "unnamed"), "disable"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ruby", "unnamed_statements.rb")
	cmd.Dir, cmd.Env, cmd.WaitDelay = "ruby", env, 5*time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "2 passed checks, 0 failed") {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("\n%s", out)
}
