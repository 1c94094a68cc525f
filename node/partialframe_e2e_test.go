package node_test

import (
	"bufio"
	"testing"

	"tdb/internal/testnode"
)

// TestQueryAnsweredAheadOfAPartialMessage: a Query that arrives with the
// start of the client's next message in the same read is forwarded and
// answered at once, as PostgreSQL answers it, not held until the rest of
// that message comes (which a client waiting for the answer never sends).
// In a workspace too, where the goroutine relay serves the connection.
func TestQueryAnsweredAheadOfAPartialMessage(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		for _, target := range []struct{ key, database string }{
			{key, "myapp__wayne"},
			{e.ProxyPassword, "myapp_workspace"},
		} {
			conn := loggedIn(t, e.ConnString(target.key, target.database, "disable"))
			// A Query, then a Query's header promising 100 bytes, and 3 of them.
			msg := append(rawQuery("SELECT 1"), 'Q', 0, 0, 0, 104, 'S', 'E', 'L')
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			if types, err := readUntilRFQ(conn, bufio.NewReader(conn), answerWait); err != nil {
				t.Fatalf("%s: the Query ahead of a partial message is not answered: %v (got %q)", target.database, err, types)
			}
		}
	})
}
