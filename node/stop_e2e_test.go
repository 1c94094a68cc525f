package node_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"tdb/internal/testnode"
	"tdb/node"
)

// lockedBuffer is a log output that the node's goroutines may write while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStopClosesSessionsPastStopWait: a session of a tenant workspace whose
// statement is in flight when its client is dropped waits for the backend's
// answer (its DDL may commit and be recorded); Stop waits for it only
// StopWait, then closes it, says so in the log, and goes on.
func TestStopClosesSessionsPastStopWait(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	e := testnode.Start(t, func(c *node.Config) {
		c.StopWait = time.Second
		c.LogOutput = logs
	})
	ctx := context.Background()
	admin := connect(t, e.PG.URL())
	sleep := "SELECT pg_sleep(600) /* " + t.Name() + " */"
	t.Cleanup(func() {
		// The backend sleeps on after its client is gone: end it.
		_, _ = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1", sleep)
	})
	busy := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	go func() { _, _ = busy.Exec(ctx, sleep) }()
	waitFor(t, "the statement running", func() bool {
		var n int
		err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'", sleep).Scan(&n)
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
