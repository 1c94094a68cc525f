package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/syncbuf"
	"tdb/internal/testnode"
	"tdb/node"
)

// journalFixture is a node whose workspace keeps the DDL journal, with a
// superuser connection to the workspace's database and a way to run DDL
// in it as its admin role without the proxy: what a session whose node
// stopped between the COMMIT and the record leaves behind.
type journalFixture struct {
	e   *testnode.Env
	log *syncbuf.Buffer
	su  *pgx.Conn // superuser, in the workspace's database
	db  string
}

func newJournalFixture(t *testing.T, configure ...func(*node.Config)) *journalFixture {
	log := &syncbuf.Buffer{}
	e := testnode.Start(t, append([]func(*node.Config){func(cfg *node.Config) { cfg.LogOutput = log }}, configure...)...)
	f := &journalFixture{e: e, log: log, db: e.Physical(t, fsm.WorkspaceDatabase("myapp"))}
	waitFor(t, "the workspace's guard to keep the journal", func() bool {
		guard := 0
		e.Node.FSM().View(func(s *fsm.State) { guard = s.Databases[f.db].Guard })
		return guard >= backend.JournalGuard
	})
	f.su = connect(t, f.dbURL(t, "", ""))
	return f
}

// dbURL is the test server's URL to the workspace's database, as user
// (with password) or as the superuser when user is "".
func (f *journalFixture) dbURL(t *testing.T, user, password string) string {
	u, err := url.Parse(f.e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + f.db
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// asAdmin connects to the workspace's database as its admin login role,
// past the proxy.
func (f *journalFixture) asAdmin(t *testing.T) *pgx.Conn {
	var password string
	f.e.Node.FSM().View(func(s *fsm.State) { password = s.Databases[f.db].Passwords.Admin })
	return connect(t, f.dbURL(t, backend.RoleName(f.db, backend.RoleAdmin), password))
}

func (f *journalFixture) journalRows(t *testing.T) int {
	var n int
	if err := f.su.QueryRow(context.Background(), "SELECT count(*) FROM tdb_guard.journal").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *journalFixture) versions() []fsm.BlueprintVersion {
	var vs []fsm.BlueprintVersion
	f.e.Node.FSM().View(func(s *fsm.State) {
		vs = slices.Clone(s.Projects[f.e.ProjectID].Workspaces["myapp"].Versions)
	})
	return vs
}

var journalID = regexp.MustCompile(`^[0-9]+@[0-9]+$`)

// A session records its DDL under the capture id the workspace's journal
// gave it, and deletes the journal's rows once recorded; the journal's
// notice never reaches the client, whatever client_min_messages it set.
func TestJournalIdsAndRowsOfRecordedDDL(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Code+" "+n.Message) }
	ws, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close(ctx)
	simple := pgx.QueryExecModeSimpleProtocol
	for _, sql := range []string{
		"CREATE TABLE jr1 (id int)",
		"SET client_min_messages = error",
		"BEGIN; CREATE TABLE jr2 (id int); CREATE INDEX jr2_id ON jr2 (id); COMMIT",
		"CREATE INDEX CONCURRENTLY jr1_id ON jr1 (id)",
	} {
		if _, err := ws.Exec(ctx, sql, simple); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := ws.Exec(ctx, "ALTER TABLE jr1 ADD COLUMN c text"); err != nil { // extended protocol
		t.Fatal(err)
	}
	if len(notices) > 0 {
		t.Errorf("notices reached the client: %q", notices)
	}
	vs := f.versions()
	if len(vs) != 4 {
		t.Fatalf("%d versions, want 4: %+v", len(vs), vs)
	}
	for _, v := range vs {
		if !journalID.MatchString(v.CaptureID) {
			t.Errorf("version %d has capture id %q, not the journal's", v.Version, v.CaptureID)
		}
	}
	if vs[1].CaptureID == vs[0].CaptureID || len(vs[1].Statements) != 2 {
		t.Errorf("the transaction's version: %+v", vs[1])
	}
	waitFor(t, "the journal's rows to be deleted", func() bool { return f.journalRows(t) == 0 })
}

// DDL that committed in the workspace and was not recorded (its node
// stopped in between) is recorded, in its order, by the next session that
// runs DDL there, before that session's own; a version recorded already
// (its rows left behind) is not made twice; and DDL whose statements the
// journal cannot tell is logged, not guessed.
func TestJournalRecordsDDLLeftUnrecorded(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := ws.Exec(ctx, "CREATE TABLE lu1 (id int)", simple); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the journal's rows to be deleted", func() bool { return f.journalRows(t) == 0 })
	first := f.versions()[0]
	// The first version's rows, as left by a node that stopped after
	// recording it and before deleting them.
	if _, err := f.su.Exec(ctx, `INSERT INTO tdb_guard.journal (capture_id, query, tag, received, timezone, datestyle, intervalstyle)
		VALUES ($1, 'CREATE TABLE lu1 (id int)', 'CREATE TABLE', now(), 'UTC', 'ISO, MDY', 'postgres')`, first.CaptureID); err != nil {
		t.Fatal(err)
	}

	admin := f.asAdmin(t)
	for _, sql := range []string{
		"SET TimeZone = 'Europe/Paris'",
		"BEGIN; CREATE TABLE lu2 (id int); CREATE INDEX lu2_id ON lu2 (id); COMMIT",
		"RESET TimeZone",
		"BEGIN; CREATE TABLE lu_gone (id int); ROLLBACK",
		"CREATE TABLE lu3 (id int); COMMIT; CREATE TABLE lu4 (id int)",
		// A savepoint rolled back part of the message: which CREATE TABLE
		// committed cannot be told from the rows.
		"BEGIN; SAVEPOINT a; CREATE TABLE lu_x (id int); ROLLBACK TO a; CREATE TABLE lu_y (id int); COMMIT",
	} {
		if _, err := admin.Exec(ctx, sql, simple); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := admin.Exec(ctx, "ALTER TABLE lu2 ADD COLUMN c text"); err != nil { // extended protocol
		t.Fatal(err)
	}
	if f.journalRows(t) != 7 {
		t.Fatalf("the journal holds %d rows, want 7", f.journalRows(t))
	}

	if _, err := ws.Exec(ctx, "CREATE TABLE lu5 (id int)", simple); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range f.versions() {
		got = append(got, strings.Join(v.Statements, "; "))
	}
	want := []string{
		"CREATE TABLE lu1 (id int)",
		"CREATE TABLE lu2 (id int); CREATE INDEX lu2_id ON lu2 (id)",
		"CREATE TABLE lu3 (id int)",
		"CREATE TABLE lu4 (id int)",
		"ALTER TABLE lu2 ADD COLUMN c text",
		"CREATE TABLE lu5 (id int)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions:\n got %q\nwant %q", got, want)
	}
	if f.log.Contains("capture " + first.CaptureID + ",") {
		t.Errorf("the version recorded already was proposed again from the journal:\n%s", f.log.String())
	}
	if s := f.versions()[1].Settings; s == nil || s.TimeZone != "Europe/Paris" {
		t.Errorf("the recovered version's settings %+v, want the TimeZone it ran with", s)
	}
	if !f.log.Contains("is not recorded as a blueprint version and cannot be") || !f.log.Contains("CREATE TABLE lu_y") {
		t.Errorf("the DDL the journal could not tell was not logged:\n%s", f.log.String())
	}
	waitFor(t, "the journal's rows to be deleted", func() bool { return f.journalRows(t) == 0 })
}

// The schema endpoint records its statements under the journal's capture
// id and deletes their rows; DDL the journal held from before is recorded
// ahead of them.
func TestJournalAndTheSchemaEndpoint(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	admin := f.asAdmin(t)
	if _, err := admin.Exec(ctx, "CREATE TABLE js1 (id int)"); err != nil {
		t.Fatal(err)
	}
	status, out := postSchema(t, f.e, "myapp", map[string]string{"template": "saas"})
	if status != 201 {
		t.Fatalf("schema: %d %+v", status, out)
	}
	vs := f.versions()
	if len(vs) != 2 || vs[0].Statements[0] != "CREATE TABLE js1 (id int)" || len(vs[1].Statements) != 3 {
		t.Fatalf("versions %+v, want the DDL left unrecorded, then the template's", vs)
	}
	if !journalID.MatchString(vs[1].CaptureID) {
		t.Errorf("the template's version has capture id %q, not the journal's", vs[1].CaptureID)
	}
	if n := f.journalRows(t); n != 0 {
		t.Fatalf("the journal still holds %d rows", n)
	}
}

// pg_dump of the workspace as its admin role (what a key's pg_dump through
// the proxy runs as) works with the journal there.
func TestJournalLeavesPgDumpWorking(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	var password string
	f.e.Node.FSM().View(func(s *fsm.State) { password = s.Databases[f.db].Passwords.Admin })
	out, err := exec.Command("pg_dump", "--schema-only", "-d", f.dbURL(t, backend.RoleName(f.db, backend.RoleAdmin), password)).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump as the admin role: %v\n%s", err, out)
	}
}

// A session that waited for the capture lock while the session holding it
// committed DDL and went away unrecorded (its node killed) sees that DDL
// once it has the lock, in a transaction it began before (read committed)
// or one with an older snapshot (repeatable read), and records it first.
func TestJournalSeenByTheLockWaiter(t *testing.T) {
	t.Parallel()
	for _, iso := range []string{"read committed", "repeatable read"} {
		t.Run(iso, func(t *testing.T) {
			t.Parallel()
			f := newJournalFixture(t)
			ctx := context.Background()
			simple := pgx.QueryExecModeSimpleProtocol
			ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
			if _, err := ws.Exec(ctx, "BEGIN ISOLATION LEVEL "+iso+"; SELECT 1", simple); err != nil {
				t.Fatal(err)
			}
			// The crashed session: it holds the lock, commits its DDL, and
			// ends without recording it.
			admin := f.asAdmin(t)
			if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", backend.CaptureLockKey); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := ws.Exec(ctx, "CREATE TABLE sw2 (id int)", simple)
				done <- err
			}()
			newCaptureLocks(t, f.e).awaitWaiter("the session's DDL to wait for the capture lock")
			if _, err := admin.Exec(ctx, "CREATE TABLE sw1 (id int)", simple); err != nil {
				t.Fatal(err)
			}
			admin.Close(ctx)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, err := ws.Exec(ctx, "COMMIT", simple); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range f.versions() {
				got = append(got, strings.Join(v.Statements, "; "))
			}
			if want := []string{"CREATE TABLE sw1 (id int)", "CREATE TABLE sw2 (id int)"}; !slices.Equal(got, want) {
				t.Fatalf("versions %q, want %q", got, want)
			}
		})
	}
}

// The session that gives the capture lock back deletes its version's
// journal rows in the same statement, whose DELETE commits only after the
// lock is free: the next session, which finds the rows still there, does
// not take that DDL for DDL left unrecorded.
func TestJournalRowsBeingDeletedAreNotRecovered(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	// The release's DELETE waits, at its commit, for an advisory lock the
	// test holds: a deferred trigger of the journal's.
	const held = 7301
	for _, sql := range []string{
		`CREATE FUNCTION tdb_guard.test_hold() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS
			$$ BEGIN PERFORM pg_advisory_xact_lock_shared(7301); RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER test_hold AFTER DELETE ON tdb_guard.journal
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tdb_guard.test_hold()`,
	} {
		if _, err := f.su.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	holder := connect(t, f.dbURL(t, "", ""))
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", held); err != nil {
		t.Fatal(err)
	}
	first := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := first.Exec(ctx, "CREATE TABLE rd1 (id int)", simple); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the release's DELETE to wait at its commit", func() bool {
		var n int
		if err := f.su.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, held).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	second := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	done := make(chan error, 1)
	go func() {
		_, err := second.Exec(ctx, "CREATE TABLE rd2 (id int)", simple)
		done <- err
	}()
	// The second session's DDL ends, or waits for the rows the release
	// deletes.
	var err error
	ended := false
	waitFor(t, "the second session's DDL to end or to wait for the journal's rows", func() bool {
		select {
		case err = <-done:
			ended = true
			return true
		default:
		}
		var n int
		if err := f.su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'transactionid'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	holder.Close(ctx)
	if !ended {
		err = <-done
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range f.versions() {
		got = append(got, strings.Join(v.Statements, "; "))
	}
	if want := []string{"CREATE TABLE rd1 (id int)", "CREATE TABLE rd2 (id int)"}; !slices.Equal(got, want) {
		t.Fatalf("versions %q, want %q", got, want)
	}
	if f.log.Contains("may not have recorded") {
		t.Errorf("DDL its session recorded was recorded again from the journal:\n%s", f.log.String())
	}
}

// A session that runs DDL and then makes its transactions read-only
// (default_transaction_read_only) gives the capture lock back: the
// statement that does also deletes the journal's rows, and failed in a
// read-only transaction, so the lock stayed held and every other DDL of
// the workspace waited for it. The rows stay; the next DDL records them
// once, as the versions they are.
func TestJournalReadOnlySessionGivesTheLockBack(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := ws.Exec(ctx, "CREATE TABLE ro1 (id int); SET default_transaction_read_only = on", simple); err != nil {
		t.Fatal(err)
	}
	newCaptureLocks(t, f.e).awaitNone("the read-only session to give the capture lock back")
	other := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := other.Exec(ctx, "CREATE TABLE ro2 (id int)", simple); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range f.versions() {
		got = append(got, strings.Join(v.Statements, "; "))
	}
	if want := []string{"CREATE TABLE ro1 (id int)", "CREATE TABLE ro2 (id int)"}; !slices.Equal(got, want) {
		t.Fatalf("versions %q, want %q", got, want)
	}
	waitFor(t, "the journal's rows to be deleted", func() bool { return f.journalRows(t) == 0 })
}

// Only the workspace's admin role, whose sessions record DDL, may delete
// rows from the journal: a read or write key could otherwise delete the
// rows of DDL left unrecorded (the journal, which it may read, shows their
// ids), and that DDL would never be recorded.
func TestJournalForgetNeedsTheAdminRole(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	var passwords fsm.RolePasswords
	f.e.Node.FSM().View(func(s *fsm.State) { passwords = s.Databases[f.db].Passwords })
	if _, err := f.asAdmin(t).Exec(ctx, "CREATE TABLE fa1 (id int)"); err != nil {
		t.Fatal(err)
	}
	forget := "SELECT tdb_guard.forget_journal(ARRAY(SELECT capture_id FROM tdb_guard.journal))"
	for _, role := range []string{backend.RoleRead, backend.RoleWrite} {
		c := connect(t, f.dbURL(t, backend.RoleName(f.db, role), passwords.For(role)))
		_, err := c.Exec(ctx, forget)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("forget_journal as the %s role: %v, want permission denied (42501)", role, err)
		}
		if n := f.journalRows(t); n != 1 {
			t.Fatalf("the journal holds %d rows after the %s role's try, want 1", n, role)
		}
	}
	if _, err := f.asAdmin(t).Exec(ctx, forget); err != nil {
		t.Fatalf("forget_journal as the admin role: %v", err)
	}
	if n := f.journalRows(t); n != 0 {
		t.Fatalf("the journal holds %d rows after the admin role's forget, want 0", n)
	}
}

// The journal holds a message's text once per transaction, however many
// DDL statements of it ran there: a migration of n statements sent in one
// message wrote its whole text n times (quadratic in its size, in the
// migration's own transaction). The rows still tell each statement.
func TestJournalHoldsAMessageOnce(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	var msg strings.Builder
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("CREATE TABLE mo%d (id int)", i))
		msg.WriteString(want[i] + ";\n")
	}
	if _, err := f.asAdmin(t).Exec(ctx, msg.String(), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	var rows, texts int
	if err := f.su.QueryRow(ctx, "SELECT count(*), count(query) FROM tdb_guard.journal").Scan(&rows, &texts); err != nil {
		t.Fatal(err)
	}
	if rows != 50 || texts != 1 {
		t.Fatalf("the journal holds %d rows with %d texts, want 50 with 1", rows, texts)
	}
	ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := ws.Exec(ctx, "CREATE TABLE mo_last (id int)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	vs := f.versions()
	if len(vs) != 2 || !slices.Equal(vs[0].Statements, want) {
		t.Fatalf("versions %+v, want the message's 50 statements, then the session's", vs)
	}
}

// What fires the event trigger but is no DDL to the proxy (REFRESH
// MATERIALIZED VIEW rewrites rows) leaves nothing in the journal.
func TestJournalLeavesOutRefresh(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	ws := connect(t, f.e.ConnString(f.e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := ws.Exec(ctx, "CREATE MATERIALIZED VIEW jmv AS SELECT 1 AS one"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the journal's rows to be deleted", func() bool { return f.journalRows(t) == 0 })
	if _, err := f.asAdmin(t).Exec(ctx, "REFRESH MATERIALIZED VIEW jmv"); err != nil {
		t.Fatal(err)
	}
	if n := f.journalRows(t); n != 0 {
		t.Fatalf("REFRESH MATERIALIZED VIEW left %d rows in the journal", n)
	}
}

// The schema endpoint refuses with 503, as a session refuses with 57P03,
// when the DDL its journal holds cannot be recorded first (here the journal
// cannot be read): its statements did not run, and are not the client's
// query error.
func TestJournalUnreadableRefusesTheSchemaEndpoint(t *testing.T) {
	t.Parallel()
	f := newJournalFixture(t)
	ctx := context.Background()
	if _, err := f.su.Exec(ctx, "ALTER TABLE tdb_guard.journal RENAME COLUMN tag TO tag_renamed"); err != nil {
		t.Fatal(err)
	}
	status, out := postSchema(t, f.e, "myapp", map[string]string{"template": "saas"})
	if status != 503 || out.Code != "unavailable" || out.SQLState != "" ||
		!strings.Contains(out.Message, "DDL that committed in it earlier is not recorded as a blueprint version") {
		t.Fatalf("schema with an unreadable journal: %d %+v", status, out)
	}
	var tables int
	if err := f.su.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 || len(f.versions()) != 0 {
		t.Fatalf("%d tables, versions %+v after the refusal", tables, f.versions())
	}
}
