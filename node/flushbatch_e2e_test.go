package node_test

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/internal/testnode"
)

// TestQueryAfterAnsweredFlushBatch: asyncpg prepares a statement with
// Parse, Describe and Flush, no Sync, and sends its next Query (the COMMIT
// of the transaction the prepare was the last statement of, the COPY of
// copy_records_to_table) once those are answered. PostgreSQL runs that
// Query; the proxy ended the session with FATAL 08P01 instead. With and
// without a row limit (the Query may then be guarded).
func TestQueryAfterAnsweredFlushBatch(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	for _, limit := range []int{0, 100} {
		e.MustDo(t, "PATCH", "/v1/workspaces/myapp/settings", e.ProxyPassword, "", map[string]any{"max_rows_per_query": limit}, nil)
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		fe := c.PgConn().Frontend()
		prepare := func(name string) {
			t.Helper()
			send(t, fe, &pgproto3.Parse{Name: name, Query: "SELECT name FROM accounts WHERE id = $1"},
				&pgproto3.Describe{ObjectType: 'S', Name: name}, &pgproto3.Flush{})
			var got []string
			for len(got) < 3 {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("limit %d: prepare %s: %v", limit, name, err)
				}
				switch msg.(type) {
				case *pgproto3.ParseComplete:
					got = append(got, "1")
				case *pgproto3.ParameterDescription:
					got = append(got, "t")
				case *pgproto3.RowDescription:
					got = append(got, "T")
				case *pgproto3.ErrorResponse:
					got = append(got, "E")
				}
			}
			if !slices.Equal(got, []string{"1", "t", "T"}) {
				t.Fatalf("limit %d: prepare %s: got %q", limit, name, got)
			}
		}
		query := func(sql string, want ...string) {
			t.Helper()
			send(t, fe, &pgproto3.Query{String: sql})
			if got := answers(t, fe); !slices.Equal(got, want) {
				t.Fatalf("limit %d: %s after a prepare: got %q, want %q", limit, sql, got, want)
			}
		}

		prepare("a")
		query("SELECT 1", "SELECT 1", "Z I")
		query("BEGIN", "BEGIN", "Z T")
		prepare("b")
		query("COMMIT", "COMMIT", "Z I")
		prepare("c")
		query("INSERT INTO accounts (name, email) VALUES ('f', 'f@test.com') RETURNING id", "INSERT 0 1", "Z I")
		prepare("d")
		query("COPY accounts FROM STDIN", "E 0A000", "Z I")
		query("DELETE FROM accounts WHERE name = 'f'", "DELETE 1", "Z I")
		// A BEGIN behind a prepare the row guard put in its transaction
		// begins the client's: its ROLLBACK keeps nothing.
		prepare("e")
		query("BEGIN", "BEGIN", "Z T")
		query("INSERT INTO accounts (name, email) VALUES ('g', 'g@test.com')", "INSERT 0 1", "Z T")
		query("ROLLBACK", "ROLLBACK", "Z I")
		query("SELECT 1 FROM accounts WHERE name = 'g'", "SELECT 0", "Z I")
		// The statements are still there.
		send(t, fe, &pgproto3.Bind{PreparedStatement: "b", Parameters: [][]byte{[]byte("1")}},
			&pgproto3.Execute{}, &pgproto3.Sync{})
		if got := answers(t, fe); !slices.Equal(got, []string{"2", "SELECT 0", "Z I"}) {
			t.Fatalf("limit %d: the statement prepared before COMMIT: got %q", limit, got)
		}
	}
}
