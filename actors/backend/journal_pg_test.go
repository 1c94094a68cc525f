package backend_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/internal/testpg"
)

// journalDB makes a tenant workspace database that keeps the DDL journal,
// and returns the server's superuser URL, its name, and a connection to it
// as its admin login role.
func journalDB(t *testing.T) (url, db string, admin *pgx.Conn) {
	url = testpg.Shared(t).URL()
	db = "jv_" + randHex(4) + "_workspace"
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
	admin, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	return url, db, admin
}

// The journal's rows of a message that holds DDL firing no event trigger
// (an EXPLAIN ANALYZE of a CREATE TABLE … AS) besides DDL that does are
// told apart: the statements read back are those that wrote the rows.
func TestJournalVersionsPassOverDDLWithoutTrigger(t *testing.T) {
	t.Parallel()
	url, db, admin := journalDB(t)
	ctx := context.Background()
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

// A recovery that fails to record the second transaction of a message
// that spans two leaves the first one's rows too: the next recovery tells
// the second one's statements from the rows of both, and records it.
func TestRecoverJournalFailingMidMessage(t *testing.T) {
	t.Parallel()
	url, db, admin := journalDB(t)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE TABLE b (id int); COMMIT; CREATE TABLE c (id int)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	recorded := map[string][]string{}
	var logs []string
	recorder := func(fail bool) backend.JournalRecorder {
		return backend.JournalRecorder{
			Recorded: func(id string) bool { return recorded[id] != nil },
			Record: func(v backend.JournalVersion) error {
				if fail && len(recorded) == 1 {
					return errors.New("the leader is not reachable")
				}
				recorded[v.CaptureID] = v.Statements
				return nil
			},
			Refused: func(error) bool { return false },
			Logf:    func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) },
		}
	}
	if err := backend.RecoverJournal(ctx, url, db, recorder(true)); err == nil {
		t.Fatal("the failing recovery returned no error")
	}
	if len(recorded) != 1 {
		t.Fatalf("recorded %v before the failure, want the first transaction", recorded)
	}
	if err := backend.RecoverJournal(ctx, url, db, recorder(false)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, statements := range recorded {
		got = append(got, statements...)
	}
	slices.Sort(got)
	if want := []string{"CREATE TABLE b (id int)", "CREATE TABLE c (id int)"}; !slices.Equal(got, want) {
		t.Fatalf("recorded %q, want %q; log:\n%s", got, want, strings.Join(logs, "\n"))
	}
	if rows, err := backend.ReadJournal(ctx, url, db); err != nil || len(rows) != 0 {
		t.Fatalf("the journal holds %+v (%v) after both are recorded", rows, err)
	}
}
