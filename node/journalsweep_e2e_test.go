package node_test

import (
	"context"
	"testing"
	"time"

	"tdb/actors/backend"
	"tdb/node"
)

// DDL that committed and that no session recorded is recorded by the
// leader's sweep of the workspace's journal, without waiting for the
// workspace's next DDL; a workspace whose capture lock a session holds is
// passed over until it is given back.
func TestJournalSwept(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t, func(cfg *node.Config) { cfg.JournalSweep = 100 * time.Millisecond })
	ctx := context.Background()
	admin := f.asAdmin(t)
	if _, err := admin.Exec(ctx, "CREATE TABLE swept1 (id int)"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sweep to record the DDL", func() bool { return len(f.versions()) == 1 })
	if v := f.versions()[0]; len(v.Statements) != 1 || v.Statements[0] != "CREATE TABLE swept1 (id int)" {
		t.Fatalf("version %+v", v)
	}
	waitFor(t, "the journal's rows to be deleted", func() bool { return f.journalRows(t) == 0 })

	// A session holds the capture lock: the sweep passes the workspace by.
	holder := connect(t, f.dbURL(t, "", ""))
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", backend.CaptureLockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE TABLE swept2 (id int)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // ten sweeps
	if n := len(f.versions()); n != 1 {
		t.Fatalf("%d versions while the capture lock was held", n)
	}
	holder.Close(ctx)
	waitFor(t, "the sweep to record the DDL once the lock is free", func() bool { return len(f.versions()) == 2 })
}

// A workspace whose journal is gone while the state records its guard (a
// server restored from a backup of before it) gets it back from the sweep:
// its DDL, whose lock Query asks the journal, would fail until then.
func TestJournalSweepReinstallsALostJournal(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t, func(cfg *node.Config) { cfg.JournalSweep = 100 * time.Millisecond })
	ctx := context.Background()
	if _, err := f.su.Exec(ctx, "DROP EVENT TRIGGER tdb_journal_ddl; DROP SCHEMA tdb_guard CASCADE"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the journal installed again", func() bool {
		var n int
		err := f.su.QueryRow(ctx, "SELECT count(*) FROM pg_event_trigger WHERE evtname = 'tdb_journal_ddl'").Scan(&n)
		return err == nil && n == 1
	})
	ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := ws.Exec(ctx, "CREATE TABLE after_reinstall (id int)"); err != nil {
		t.Fatal(err)
	}
}
