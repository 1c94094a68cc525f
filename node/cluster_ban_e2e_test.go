package node_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testcluster"
	"tdb/node"
)

// TestClusterBanEnforcedEverywhere: failed logins on one node ban the IP on
// every node (the ban lives in the replicated FSM). The test logs how long
// after the first node saw the ban the last one did.
func TestClusterBanEnforcedEverywhere(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t)
	a := others(c, leader)[0] // failures land on a follower: its tracker's command is forwarded
	c.MustDo(t, leader, "PATCH", "/v1/cluster/settings", testcluster.AdminKey, "", map[string]int64{"auth_fail_threshold": 3}, nil)

	// Watch every node's FSM for the ban.
	seen := make([]time.Time, len(c.Members))
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, m := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.Node.FSM().WaitFor(ctx, func(s *fsm.State) bool { _, ok := s.BannedUntil("127.0.0.1", time.Now()); return ok })
			if err == nil {
				seen[i] = time.Now()
			}
		}()
	}
	for range 3 {
		_, err := pgx.Connect(context.Background(), c.ConnString(a, "tdb_0000000000000000", "controlplane_workspace"))
		if pe := pgErr(t, err); pe.Code != "28P01" {
			t.Fatalf("wrong password: %s %s", pe.Code, pe.Message)
		}
	}
	wg.Wait()
	first, last := seen[0], seen[0]
	for i, s := range seen {
		if s.IsZero() {
			t.Fatalf("%s never saw the ban", c.Members[i].ID)
		}
		if s.Before(first) {
			first = s
		}
		if s.After(last) {
			last = s
		}
	}
	t.Logf("ban applied on all nodes within %s of the first", last.Sub(first).Round(time.Microsecond))
	for i := range c.Members {
		_, err := pgx.Connect(context.Background(), c.ConnString(i, c.ProxyPassword, "controlplane_workspace"))
		if pe := pgErr(t, err); pe.Code != "53300" || pe.Severity != "FATAL" {
			t.Fatalf("right password from the banned IP on %s: %s %s %q", c.Members[i].ID, pe.Severity, pe.Code, pe.Message)
		}
	}
	// The nodes share the banned address: their calls to each other go on.
	secret := node.DeriveClusterSecret(testcluster.AdminKey)
	for _, m := range c.Members {
		if status, _ := authGet(t, m.Node.HTTPAddr(), "/internal/counts", "Bearer "+secret); status != http.StatusOK {
			t.Fatalf("an internal call to %s from the banned address of the nodes: %d", m.ID, status)
		}
	}
}
