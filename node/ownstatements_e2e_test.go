package node_test

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/internal/testnode"
)

// The proxy's own statements (the capture lock, its release, the row
// guard's BEGIN, COMMIT, ROLLBACK and abort) go between the client's
// batches. PostgreSQL drops the unnamed prepared statement at every simple
// Query, and a simple Query's statement takes over the unnamed portal: a
// client that parses an unnamed statement in one round trip and binds it
// in the next (asyncpg with statement_cache_size=0, libpq's PQprepare with
// "" and PQexecPrepared) must still find it, as it does on PostgreSQL.

// rawBatch sends msgs and a Sync on a raw session and checks the answers
// up to its ReadyForQuery, named as answers names them.
func rawBatch(t *testing.T, fe *pgproto3.Frontend, want []string, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	send(t, fe, append(msgs, &pgproto3.Sync{})...)
	if got := answers(t, fe); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestCaptureKeepsTheClientsUnnamedStatement: the capture lock taken ahead
// of a batch and given back after it leave the client's unnamed statement,
// and its unnamed portal in a transaction, as they were.
func TestCaptureKeepsTheClientsUnnamedStatement(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	c := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	fe := c.PgConn().Frontend()
	// DDL prepared in one round trip, run in the next: each takes the lock
	// and gives it back.
	rawBatch(t, fe, []string{"1", "Z I"}, &pgproto3.Parse{Query: "CREATE TABLE own_a (id int)"})
	rawBatch(t, fe, []string{"2", "CREATE TABLE", "Z I"}, &pgproto3.Bind{}, &pgproto3.Execute{})

	// A portal suspended in a transaction, executed on after DDL that took
	// the lock ahead of its batch.
	rawBatch(t, fe, []string{"1", "2", "BEGIN", "Z T"}, &pgproto3.Parse{Name: "b", Query: "BEGIN"}, &pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{})
	rawBatch(t, fe, []string{"1", "2", "s", "Z T"},
		&pgproto3.Parse{Query: "SELECT g FROM generate_series(1, 3) g"}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1})
	rawBatch(t, fe, []string{"1", "2", "CREATE TABLE", "SELECT 2", "Z T"},
		&pgproto3.Parse{Name: "ddl", Query: "CREATE TABLE own_b (id int)"}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "ddl"},
		&pgproto3.Execute{Portal: "p"}, &pgproto3.Execute{})
	rawBatch(t, fe, []string{"1", "2", "COMMIT", "Z I"}, &pgproto3.Parse{Name: "c", Query: "COMMIT"},
		&pgproto3.Bind{PreparedStatement: "c"}, &pgproto3.Execute{})
	// The unnamed statement (the SELECT) is still there after the
	// transaction's release of the lock.
	rawBatch(t, fe, []string{"2", "SELECT 3", "Z I"}, &pgproto3.Bind{}, &pgproto3.Execute{})

	// The name the proxy's statements run as is not the client's to take:
	// each exchange closes a statement and a portal of that name.
	rawBatch(t, fe, []string{"E 42939", "Z I"}, &pgproto3.Parse{Name: "tdb_proxy_own", Query: "SELECT 1"})
	rawBatch(t, fe, []string{"E 42939", "Z I"}, &pgproto3.Bind{DestinationPortal: "tdb_proxy_own"}, &pgproto3.Execute{Portal: "tdb_proxy_own"})
	rawBatch(t, fe, []string{"2", "SELECT 3", "Z I"}, &pgproto3.Bind{}, &pgproto3.Execute{})

	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 2 || versions[0].Statements[0] != "CREATE TABLE own_a (id int)" || versions[1].Statements[0] != "CREATE TABLE own_b (id int)" {
		t.Fatalf("versions %+v", versions)
	}
}

// TestPolicyMaxRowsKeepsTheClientsUnnamedStatement: with a row limit, the
// BEGIN ahead of a guarded batch and the COMMIT or ROLLBACK after it leave
// the client's unnamed statement as it was, in both relays.
func TestPolicyMaxRowsKeepsTheClientsUnnamedStatement(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		fe := c.PgConn().Frontend()
		rawBatch(t, fe, []string{"1", "Z I"}, &pgproto3.Parse{Query: `INSERT INTO accounts (name, email)
			SELECT 'u' || g, 'u' || g || '-' || random() || '@x' FROM generate_series(1, $1::int) g RETURNING id`},
			&pgproto3.Describe{ObjectType: 'S'})
		one, ten := [][]byte{[]byte("1")}, [][]byte{[]byte("10")}
		for range 2 { // guarded and committed, twice
			rawBatch(t, fe, []string{"2", "INSERT 0 1", "Z I"}, &pgproto3.Bind{Parameters: one}, &pgproto3.Execute{})
		}
		// Past the limit: guarded and rolled back, and still there.
		rawBatch(t, fe, []string{"2", "E 54000", "Z I"}, &pgproto3.Bind{Parameters: ten}, &pgproto3.Execute{})
		rawBatch(t, fe, []string{"2", "INSERT 0 1", "Z I"}, &pgproto3.Bind{Parameters: one}, &pgproto3.Execute{})
		if n := countAccounts(t, c); n != 3 {
			t.Fatalf("%d accounts, want 3", n)
		}
	})
}
