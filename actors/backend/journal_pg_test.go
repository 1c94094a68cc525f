package backend_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/internal/testpg"
)

// The journal's rows of a message that holds DDL firing no event trigger
// (an EXPLAIN ANALYZE of a CREATE TABLE … AS) besides DDL that does are
// told apart: the statements read back are those that wrote the rows.
func TestJournalVersionsPassOverDDLWithoutTrigger(t *testing.T) {
	t.Parallel()
	url := testpg.Shared(t).URL()
	db := "jv_" + randHex(4) + "_workspace"
	spec := backend.DatabaseSpec{Name: db, Kind: backend.KindWorkspace, Passwords: backend.Passwords{Admin: "a" + randHex(8), Write: "w" + randHex(8), Read: "r" + randHex(8)}}
	ctx := context.Background()
	if err := backend.Ensure(ctx, url, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database, cfg.User, cfg.Password = db, backend.RoleName(db, backend.RoleAdmin), spec.Passwords.Admin
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "EXPLAIN ANALYZE CREATE TABLE e AS SELECT 1 AS id; CREATE TABLE f (id int)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	rows, err := backend.ReadJournal(ctx, url, db)
	if err != nil {
		t.Fatal(err)
	}
	vs := backend.JournalVersions(rows)
	if len(vs) != 1 || vs[0].Err != nil || !slices.Equal(vs[0].Statements, []string{"CREATE TABLE f (id int)"}) {
		t.Fatalf("versions %+v from rows %+v", vs, rows)
	}
}
