package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/internal/syncbuf"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestLeaderWorkIsFencedOnTheBackend: a node's leader work raises its
// cluster's fence on the backend to its raft term. A fence above its term
// that its quorum does not bear out (a backend that leaders of a later
// history acted on: the cluster's raft state restored from an older copy)
// is taken back once the node confirms its leadership, and its work goes
// on there. (A frozen leader, whose quorum moved to a later term, is
// refused: actors' TestFrozenLeaderIsRefusedByTheBackend.)
func TestLeaderWorkIsFencedOnTheBackend(t *testing.T) {
	t.Parallel()
	logs := &syncbuf.Buffer{}
	e := testnode.Start(t, func(c *node.Config) { c.LogOutput = logs })
	ctx := context.Background()
	var id string
	deadline := time.Now().Add(30 * time.Second)
	for id = e.Node.FSM().ClusterID(); id == ""; id = e.Node.FSM().ClusterID() {
		if time.Now().After(deadline) {
			t.Fatal("the cluster never recorded its ID")
		}
		time.Sleep(10 * time.Millisecond)
	}
	role := backend.Fence{Cluster: id}.RoleName()
	url := e.PG.URL()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	t.Cleanup(func() { _, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()) })
	fence := func() string {
		t.Helper()
		var at string
		if err := c.QueryRow(ctx, `SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1`, role).Scan(&at); err != nil {
			t.Fatalf("the fence of cluster %s: %v", id, err)
		}
		return at
	}

	e.CreateTenant(t, "wayne")
	e.WaitReady(t)
	term := e.Node.Replica().Raft.CurrentTerm()
	if at := fence(); at != fmt.Sprint(term) {
		t.Fatalf("fence at %q, want the leader's term %d", at, term)
	}

	// Leaders of this cluster's later terms acted on the backend, which
	// this cluster's raft state does not remember. The node's drop of the
	// deleted tenant takes the fence back and drops the database.
	db := e.Physical(t, "myapp__wayne")
	later := term + 1000
	if _, err := backend.Ping(backend.WithFence(ctx, backend.Fence{Cluster: id, Term: later}), url); err != nil {
		t.Fatal(err)
	}
	e.MustDo(t, "DELETE", "/v1/tenants/wayne", e.ProxyPassword, "", nil, nil)
	want := fmt.Sprintf("a backend's fence of this cluster is at raft term %d, above this leader's term %d, which a quorum confirmed", later, term)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("no %q in the node's log", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatal("the deleted tenant's database was never dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if at := fence(); at != fmt.Sprint(term) {
		t.Fatalf("fence at %q after the drop, want the leader's term %d", at, term)
	}
}
