package node_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
)

// TestCaptureClusterUsing: CLUSTER t USING i marks i as t's clustered index
// (pg_dump writes it as ALTER TABLE t CLUSTER ON i), so it is a schema
// change: recorded in the workspace, a tenant has it too.
func TestCaptureClusterUsing(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	for _, sql := range []string{
		seedAccounts,
		"CREATE INDEX accounts_name_idx ON accounts (name)",
		"CLUSTER accounts USING accounts_name_idx",
	} {
		if _, err := ws.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	e.CreateTenant(t, "wayne")
	const q = `SELECT coalesce((SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'accounts'::regclass AND i.indisclustered), '')`
	var inWorkspace, inTenant string
	if err := ws.QueryRow(ctx, q).Scan(&inWorkspace); err != nil {
		t.Fatal(err)
	}
	if err := superuser(t, e, "wayne").QueryRow(ctx, q).Scan(&inTenant); err != nil {
		t.Fatal(err)
	}
	if inWorkspace != "accounts_name_idx" || inTenant != inWorkspace {
		t.Fatalf("clustered index: workspace %q, tenant %q", inWorkspace, inTenant)
	}
}
