package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
	"tdb/node"
)

// TestLazyBackendAttach: with --lazy-backend-attach a client that finds no
// idle backend session logs in without one and attaches one at its first
// message; one that leaves before any statement never costs a backend; a
// lazily attached session is a normal session (queries, protocol cancel).
func TestLazyBackendAttach(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) { c.LazyBackendAttach = true })
	ctx := context.Background()
	url := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable") + "&application_name=lazy_attach_test"
	pg, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	backends := func() int {
		t.Helper()
		var n int
		if err := pg.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lazy_attach_test'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The first client of its key attaches at login: nothing is known yet.
	first := connect(t, url)
	mustSelectOne(t, first)
	if n := backends(); n != 1 {
		t.Fatalf("%d backend sessions after the first client, want 1", n)
	}
	// With that session busy, the next client logs in without a backend.
	second := connect(t, url)
	if n := backends(); n != 1 {
		t.Fatalf("%d backend sessions after a lazy login, want 1", n)
	}
	var app string
	if err := second.QueryRow(ctx, "SHOW application_name").Scan(&app); err != nil || app != "lazy_attach_test" {
		t.Fatalf("first statement of a lazy session: %q %v", app, err)
	}
	if n := backends(); n != 2 {
		t.Fatalf("%d backend sessions after the lazy session's first statement, want 2", n)
	}
	// A protocol cancel reaches the backend the session attached.
	mustCancelSleep(t, second)
	mustSelectOne(t, second)

	// A client that leaves before any statement costs no backend session.
	third := connect(t, url)
	third.Close(ctx)
	time.Sleep(200 * time.Millisecond)
	if n := backends(); n != 2 {
		t.Fatalf("%d backend sessions after a client left without a statement, want 2", n)
	}

	// A first message larger than the proxy's first read buffer arrives
	// whole, as does one pipelined behind it (pgx sends Parse, Describe
	// and Sync in one write).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
		big := connect(t, url)
		want := strings.Repeat("x", 5000)
		var got string
		if err := big.QueryRow(ctx, "SELECT '"+want+"'::text", mode).Scan(&got); err != nil || got != want {
			t.Fatalf("a large first statement (%v): %d bytes back, %v", mode, len(got), err)
		}
		mustSelectOne(t, big)
	}
}
