package node_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/internal/testnode"
)

// TestUnnamedPortalExecutedAfterSyncIsCaptured: in a transaction block the
// unnamed portal outlives its batch's Sync (PostgreSQL drops it at the
// transaction's end, or at the next Bind of it or simple Query), so a DDL
// statement bound to it in one batch and executed in the next runs there,
// and commits with the transaction: it is a blueprint version like any
// other.
func TestUnnamedPortalExecutedAfterSyncIsCaptured(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	fe := ws.PgConn().Frontend()
	step := func(what string, want []string, msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		send(t, fe, msgs...)
		if got := answers(t, fe); !slices.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", what, got, want)
		}
	}
	step("BEGIN", []string{"BEGIN", "Z T"}, &pgproto3.Query{String: "BEGIN"})
	step("bind", []string{"1", "2", "Z T"}, &pgproto3.Parse{Query: "CREATE TABLE unnamed_later (id int)"}, &pgproto3.Bind{}, &pgproto3.Sync{})
	step("execute", []string{"CREATE TABLE", "Z T"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	step("COMMIT", []string{"COMMIT", "Z I"}, &pgproto3.Query{String: "COMMIT"})
	var n int
	if err := ws.QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relname = 'unnamed_later'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("the table: %d %v", n, err)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 1 || len(versions[0].Statements) != 1 || versions[0].Statements[0] != "CREATE TABLE unnamed_later (id int)" {
		t.Fatalf("versions = %+v, want the CREATE TABLE the unnamed portal ran", versions)
	}
}
