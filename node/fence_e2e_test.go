package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/syncbuf"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestLeaderWorkIsFencedOnTheBackend: a node's leader work raises its
// cluster's fence on the backend to its raft term; once a leader of a later
// term has acted there, its work there (a drop) is refused.
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

	e.CreateTenant(t, "wayne")
	e.WaitReady(t)
	term := e.Node.Replica().Raft.CurrentTerm()
	var at string
	if err := c.QueryRow(ctx, `SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1`, role).Scan(&at); err != nil {
		t.Fatalf("the fence of cluster %s: %v", id, err)
	}
	if at != fmt.Sprint(term) {
		t.Fatalf("fence at %q, want the leader's term %d", at, term)
	}

	// A leader of a later term acts on the backend: this node's drop of
	// the deleted tenant is refused there, and the database stays.
	db := e.Physical(t, "myapp__wayne")
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	if _, err := backend.Ping(backend.WithFence(ctx, backend.Fence{Cluster: id, Term: term + 1}), url); err != nil {
		t.Fatal(err)
	}
	e.MustDo(t, "DELETE", "/v1/tenants/wayne", e.ProxyPassword, "", nil, nil)
	want := fmt.Sprintf("backend fenced by leader term %d: this node's term %d is over", term+1, term)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("no %q in the node's log", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the database of the tenant after a fenced off drop: %d (%v), want 1", n, err)
	}
	e.Node.FSM().View(func(s *fsm.State) {
		if d := s.Databases[db]; d == nil || d.Status != fsm.StatusDeleting {
			t.Fatalf("the fenced off tenant's database: %+v, want deleting", d)
		}
	})
}
