package node_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
	"tdb/querylog"
)

// logEntries reads the node's query log as the project key sees it.
func logEntries(t *testing.T, e *testnode.Env) []querylog.Entry {
	t.Helper()
	var out struct {
		Entries []querylog.Entry `json:"entries"`
	}
	e.MustDo(t, "GET", "/v1/logs", e.ProxyPassword, "", nil, &out)
	return out.Entries
}

// TestQueryLogKeepsStatementsTheClientLeft: a statement still running when
// its client goes away is in the query log, marked 08006, and not lost with
// the session: on a tenant database, and in a tenant workspace, whose
// session reads the backend on after the proxy's cancel (DDL in flight may
// commit), so the 57014 that cancel brings must not be logged as a cancel
// the client asked for.
func TestQueryLogKeepsStatementsTheClientLeft(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	wayne := e.CreateTenant(t, "wayne")
	admin := connect(t, e.PG.URL())
	for _, tc := range []struct{ name, password, database, tenant string }{
		{"tenant", wayne, "myapp__wayne", "wayne"},
		{"workspace", e.ProxyPassword, "myapp_workspace", ""},
	} {
		c := connect(t, e.ConnString(tc.password, tc.database, "disable"))
		stmt := "SELECT pg_sleep(60) AS left_running_" + tc.name
		sent := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
			sent <- err
		}()
		waitFor(t, "the statement running on the backend", func() bool {
			var n int
			err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'", stmt).Scan(&n)
			return err == nil && n == 1
		})
		_ = c.PgConn().Conn().Close() // the client goes away mid-statement
		<-sent

		var got *querylog.Entry
		waitFor(t, "the statement in the query log", func() bool {
			for _, en := range logEntries(t, e) {
				if en.Statement == stmt {
					got = &en
					return true
				}
			}
			return false
		})
		if got.SQLState != "08006" || got.Tenant != tc.tenant || got.Database != tc.database || got.DurationMs <= 0 {
			t.Fatalf("%s: logged as %+v", tc.name, got)
		}
	}
}
