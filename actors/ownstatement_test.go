package actors

import (
	"bytes"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestOwnStatementMessages: each of the proxy's statements runs as its
// own named statement and portal, closed ahead (what a failed exchange
// left) and behind, all up to one Sync; the fixed ones are built once.
func TestOwnStatementMessages(t *testing.T) {
	be := pgproto3.NewBackend(bytes.NewReader(appendOwn(nil, "SELECT 1", "SELECT 2")), nil)
	var got []string
	for {
		msg, err := be.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.Close:
			got = append(got, "C"+string(m.ObjectType)+" "+m.Name)
		case *pgproto3.Parse:
			got = append(got, "P "+m.Name+" "+m.Query)
		case *pgproto3.Bind:
			got = append(got, "B "+m.DestinationPortal+" "+m.PreparedStatement)
		case *pgproto3.Execute:
			got = append(got, "E "+m.Portal)
		case *pgproto3.Sync:
			got = append(got, "S")
		default:
			t.Fatalf("unexpected %T", msg)
		}
		if got[len(got)-1] == "S" {
			break
		}
	}
	want := []string{"CP tdb_proxy_own", "CS tdb_proxy_own",
		"P tdb_proxy_own SELECT 1", "B tdb_proxy_own tdb_proxy_own", "E tdb_proxy_own", "CP tdb_proxy_own", "CS tdb_proxy_own",
		"P tdb_proxy_own SELECT 2", "B tdb_proxy_own tdb_proxy_own", "E tdb_proxy_own", "CP tdb_proxy_own", "CS tdb_proxy_own",
		"S"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, sql := range []string{guardBegin, guardCommit, guardRollback, guardAbort, unlockSQL} {
		if allocs := testing.AllocsPerRun(100, func() { _ = ownMessage(sql) }); allocs != 0 {
			t.Fatalf("the exchange of %q allocates %v times", sql, allocs)
		}
	}
	if !bytes.Equal(beginMessage, ownMessage(guardBegin)) || !bytes.Equal(lockMessage, appendOwn(nil, lockSQL)) {
		t.Fatal("the BEGIN's or the lock's exchange differs")
	}
}
