package backend_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/internal/testpg"
)

// BenchmarkJournalDDL is the cost the DDL journal adds to a DDL statement
// of a tenant workspace's admin role: one CREATE TABLE per transaction, and
// one message of 100 statements, with the journal's trigger enabled and
// disabled in the same run (compare the two; the ratio is what matters).
func BenchmarkJournalDDL(b *testing.B) {
	url := testpg.Shared(b).URL()
	db := "bench_" + randHex(4) + "_workspace"
	spec := backend.DatabaseSpec{Name: db, Kind: backend.KindWorkspace, Passwords: backend.Passwords{Admin: "a" + randHex(8), Write: "w" + randHex(8), Read: "r" + randHex(8)}}
	if err := backend.Ensure(context.Background(), url, spec); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	super := cfg.Copy()
	super.Database = db
	su, err := pgx.ConnectConfig(context.Background(), super)
	if err != nil {
		b.Fatal(err)
	}
	defer su.Close(context.Background())
	cfg.Database, cfg.User, cfg.Password = db, backend.RoleName(db, backend.RoleAdmin), spec.Passwords.Admin
	admin, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(context.Background())
	n := 0
	run := func(b *testing.B, perMessage int) {
		for i := 0; i < b.N; i++ {
			sql := ""
			for j := 0; j < perMessage; j++ {
				n++
				sql += fmt.Sprintf("CREATE TABLE b%d (id int);", n)
			}
			if _, err := admin.Exec(context.Background(), sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if _, err := su.Exec(context.Background(), "DELETE FROM tdb_guard.journal"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	for _, trigger := range []string{"ENABLE", "DISABLE"} {
		if _, err := su.Exec(context.Background(), "ALTER EVENT TRIGGER tdb_journal_ddl "+trigger); err != nil {
			b.Fatal(err)
		}
		for _, per := range []int{1, 100} {
			b.Run(fmt.Sprintf("journal=%s/statements=%d", trigger, per), func(b *testing.B) { run(b, per) })
		}
	}
}
