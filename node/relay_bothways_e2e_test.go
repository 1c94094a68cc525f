package node_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"tdb/internal/testnode"
)

// TestClientLeavesWhileBothWaysFull: a client that sends statements while
// it does not read a large result, until both directions are full, then
// goes away, while the goroutine relay serves it (on the loop's node, the
// loop hands the session over at a statement larger than its buffer): its
// backend session ends at once. The client pump stayed blocked for good in
// a write to the backend, which nothing read once the backend pump had
// stopped at its failed write to the client: the session, its backend
// session, and the node's Stop waited forever.
func TestClientLeavesWhileBothWaysFull(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		admin := connect(t, e.PG.URL())
		conn := loggedIn(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
		if _, err := conn.Write(rawQuery("SELECT 'bothways', repeat('x', 1000) FROM generate_series(1, 1000000)")); err != nil {
			t.Fatal(err)
		}
		var pid int
		waitFor(t, "the statement to run", func() bool {
			return admin.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT ''bothways''%' AND pid <> pg_backend_pid()").Scan(&pid) == nil
		})
		if _, err := conn.Write(rawQuery("SELECT length('" + strings.Repeat("z", 100<<10) + "')")); err != nil {
			t.Fatal(err)
		}
		// Statements until the proxy takes no more: the backend does not
		// read them while its result waits to be read.
		filler := bytes.Repeat(rawQuery("SELECT 1"), 1<<20/14)
		for i := 0; ; i++ {
			if i == 100 {
				t.Fatal("100 MB of statements sent, and the proxy still reads them")
			}
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write(filler); err != nil {
				break
			}
		}
		conn.Close()
		start := time.Now()
		for {
			var n int
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("the backend session of a client that left is still there after %v", time.Since(start))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
