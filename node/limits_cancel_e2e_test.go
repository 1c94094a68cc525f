package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
)

// TestPolicyLimitCancelSparesTheCaptureLock: a row limit's cancel still on
// its way when the statement has ended must not hit the capture lock's
// Query of the client's next batch (DDL in a tenant workspace, waiting for
// another session's DDL): that DDL would fail with 57014 though nobody
// cancelled it.
func TestPolicyLimitCancelSparesTheCaptureLock(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	setWorkspace(t, e, map[string]int64{"max_rows_per_query": 1})
	connStr := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
	a := connect(t, connStr)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE hold_a (id int)", simple); err != nil {
		t.Fatal(err)
	}
	locks := newCaptureLocks(t, e)
	for i := range 5 {
		b := connect(t, connStr)
		_, err := b.Exec(ctx, "SELECT g FROM generate_series(1, 2) g", simple)
		wantPgError(t, err, "ERROR", "54000", "query returned more than max_rows_per_query (1) rows")
		done := make(chan error, 1)
		go func() {
			_, err := b.Exec(ctx, fmt.Sprintf("CREATE TABLE late_%d (id int)", i), simple)
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("round %d: the DDL ended while another session holds the capture lock (%v): the row limit's cancel hit the lock's Query", i, err)
		case <-time.After(300 * time.Millisecond):
		}
		locks.awaitWaiter("the DDL to wait for the capture lock")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := b.PgConn().CancelRequest(cctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		wantPgError(t, <-done, "ERROR", "57014", "canceling statement due to user request")
	}
}
