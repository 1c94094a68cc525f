package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testcluster"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestLeaderCompactsState: the leader removes a key once it has been
// revoked for --revoked-key-retention (here a millisecond), after which
// the key is refused as an unknown one on the wire and over HTTP; and it
// forgets the failed-login batch IDs of a node that is not a raft server,
// keeping its own.
func TestLeaderCompactsState(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) {
		c.RevokedKeyRetention = time.Millisecond
		c.BanBatchRetention = time.Millisecond
		c.CompactInterval = 20 * time.Millisecond
	})
	ctx := context.Background()
	var created struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	e.MustDo(t, "POST", "/v1/apikeys", e.ProxyPassword, "", map[string]any{"role": "read", "scope_type": "project"}, &created)
	conn, err := pgx.Connect(ctx, e.ConnString(created.Key, "controlplane_workspace", "disable"))
	if err != nil {
		t.Fatalf("the key before its revocation: %v", err)
	}
	conn.Close(ctx)

	for _, b := range []fsm.RecordAuthFailures{{Node: "gone", Batch: "b1"}, {Node: e.Node.ID(), Batch: "b2"}} {
		b.At = time.Now().UTC()
		b.Failures = []fsm.AuthFailure{{IP: "192.0.2.44", Count: 1}}
		if _, _, err := e.Node.Apply(ctx, fsm.CmdRecordAuthFailures, &b); err != nil {
			t.Fatal(err)
		}
	}
	e.MustDo(t, "DELETE", "/v1/apikeys/"+created.ID, e.ProxyPassword, "", nil, nil)

	testcluster.Eventually(t, "the revoked key and the gone node's batches to be compacted", func() bool {
		gone := false
		e.Node.FSM().View(func(s *fsm.State) {
			gone = s.Project(e.ProjectID).Keys[created.ID] == nil
			for _, b := range s.Bans.BatchNodes() {
				if b.Node == "gone" {
					gone = false
				}
			}
		})
		return gone
	})
	e.Node.FSM().View(func(s *fsm.State) {
		if ns := s.Bans.BatchNodes(); len(ns) != 1 || ns[0].Node != e.Node.ID() {
			t.Errorf("batch nodes left: %+v", ns)
		}
		if len(s.Project(e.ProjectID).LiveKeys()) == 0 {
			t.Errorf("the live keys went too")
		}
	})

	var body struct{ Code, Message string }
	if status := e.Do(t, "GET", "/v1/apikeys", created.Key, "", nil, &body); status != 401 || body.Code != "unauthorized" || body.Message != "invalid API key" {
		t.Fatalf("the removed key over HTTP: %d %+v", status, body)
	}
	var keys []struct{ ID string }
	e.MustDo(t, "GET", "/v1/apikeys", e.ProxyPassword, "", nil, &keys)
	for _, k := range keys {
		if k.ID == created.ID {
			t.Fatal("the removed key is still listed")
		}
	}
	_, err = pgx.Connect(ctx, e.ConnString(created.Key, "controlplane_workspace", "disable"))
	wantPgError(t, err, "FATAL", "28P01", fmt.Sprintf("password authentication failed for user %q", e.ProjectID))
}
