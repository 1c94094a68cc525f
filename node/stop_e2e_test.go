package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/internal/syncbuf"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestStopClosesSessionsPastStopWait: a session of a tenant workspace whose
// statement is in flight when its client is dropped waits for the backend's
// answer (its DDL may commit and be recorded); Stop waits for it only
// StopWait, then closes it, says so in the log, and goes on. The statement
// here ignores the cancel the stop sends it.
func TestStopClosesSessionsPastStopWait(t *testing.T) {
	t.Parallel()
	logs := &syncbuf.Buffer{}
	e := testnode.Start(t, func(c *node.Config) {
		c.StopWait = time.Second
		c.LogOutput = logs
	})
	ctx := context.Background()
	admin := connect(t, e.PG.URL())
	sleep := "SELECT stubborn_sleep() /* " + t.Name() + " */"
	t.Cleanup(func() {
		// The backend sleeps on after its client is gone: end it.
		_, _ = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1", sleep)
	})
	busy := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	// Every cancel is swallowed: the stop's, and any other (one more reached
	// the statement now and then under load).
	if _, err := busy.Exec(ctx, `CREATE FUNCTION stubborn_sleep() RETURNS void LANGUAGE plpgsql AS $$
		BEGIN LOOP BEGIN PERFORM pg_sleep(600); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := busy.Exec(ctx, sleep); errc <- err }()
	waitFor(t, "the statement running", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("the statement ended: %v", err)
		default:
		}
		var n int
		// Asleep inside the block that swallows the cancel: a cancel that
		// came before it (the stop's) would end the statement.
		err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND wait_event = 'PgSleep'", sleep).Scan(&n)
		return err == nil && n == 1
	})

	stopped := make(chan error, 1)
	go func() { stopped <- e.Node.Stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Stop still waits for the busy session 60 s after it began, with a StopWait of 1 s")
	}
	e.Node = nil // stopped: not again at cleanup
	if !strings.Contains(logs.String(), "closed 1 sessions unfinished") {
		t.Fatalf("the log does not say a session was closed unfinished:\n%s", logs.String())
	}
}

// TestStopCancelsStatementsInFlight: the clients a stop closes have their
// statements in flight cancelled, as when a client leaves, rather than
// left running on the backend.
func TestStopCancelsStatementsInFlight(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	e.CreateTenant(t, "stopper")
	admin := connect(t, e.PG.URL())
	sleep := "SELECT pg_sleep(600) /* " + t.Name() + " */"
	running := func() int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'", sleep).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1", sleep)
	})
	busy := connect(t, e.ConnString(e.CreateKey(t, "write", "tenant", "stopper"), "myapp__stopper", "disable"))
	goExec(t, busy, sleep)
	waitFor(t, "the statement running", func() bool { return running() == 1 })
	if err := e.Node.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	e.Node = nil
	waitFor(t, "the statement to be cancelled", func() bool { return running() == 0 })
}

// TestStopCutsOffJournalRecovery: a session that records what the
// workspace's DDL journal holds before its DDL runs, and waits on the
// journal's database for it, ends once Stop has closed it past StopWait,
// as one recording its own version does: Stop does not wait on it.
func TestStopCutsOffJournalRecovery(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t, func(c *node.Config) {
		c.StopWait = time.Second
		c.JournalSweep = time.Hour // no sweep reads the journal meanwhile
	})
	ctx := context.Background()
	if _, err := f.asAdmin(t).Exec(ctx, "CREATE TABLE sj1 (id int)"); err != nil { // left unrecorded
		t.Fatal(err)
	}
	// The journal's reader waits: its rows are locked against FOR UPDATE,
	// not against the lock Query's look at them.
	locker := connect(t, f.dbURL(t, "", ""))
	if _, err := locker.Exec(ctx, "BEGIN; LOCK TABLE tdb_guard.journal IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = locker.Exec(ctx, "ROLLBACK") })
	ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	goExec(t, ws, "CREATE TABLE sj2 (id int)", pgx.QueryExecModeSimpleProtocol)
	waitFor(t, "the session to wait reading the journal", func() bool {
		var n int
		err := f.su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%FROM tdb_guard.journal ORDER BY seq FOR UPDATE SKIP LOCKED'`).Scan(&n)
		return err == nil && n == 1
	})
	if err := f.e.Node.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	f.e.Node = nil
	if !f.log.Contains("closed 1 sessions unfinished") || f.log.Contains("stopping without the sessions that did not end") {
		t.Fatalf("the session reading the journal was not cut off by the stop:\n%s", f.log.String())
	}
}
