package node_test

import (
	"context"
	"testing"

	"tdb/internal/testcluster"
)

// TestClusterConnectionLimitsAcrossNodes: max_connections and
// max_conns_per_ip count the connections of every node, not of the node a
// client lands on.
func TestClusterConnectionLimitsAcrossNodes(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	c.WaitLeader(t)
	c.MustDo(t, 0, "PATCH", "/v1/workspaces/myapp/settings", c.ProxyPassword, "", map[string]int64{"max_connections": 2}, nil)
	db := "myapp_workspace"
	first := connect(t, c.ConnString(0, c.ProxyPassword, db))
	connect(t, c.ConnString(1, c.ProxyPassword, db))
	// Within a report interval node 2 sees both and refuses a third.
	waitFor(t, "node 2 to count the other nodes' connections", func() bool {
		return loginCode(t, c.ConnString(2, c.ProxyPassword, db)) == "53300"
	})
	first.Close(context.Background())
	waitFor(t, "the slot freed on node 0 to be usable on node 2", func() bool {
		return loginCode(t, c.ConnString(2, c.ProxyPassword, db)) == ""
	})

	// Per IP, the same (the workspace limit lifted; every client is 127.0.0.1).
	c.MustDo(t, 0, "PATCH", "/v1/workspaces/myapp/settings", c.ProxyPassword, "", map[string]int64{"max_connections": 0}, nil)
	c.MustDo(t, 0, "PATCH", "/v1/cluster/settings", testcluster.AdminKey, "", map[string]int64{"max_conns_per_ip": 3}, nil)
	// Node 2's probe that just logged out may still be counted for one
	// report interval: the two connections through node 0 may take a retry.
	for i := 0; i < 2; i++ {
		waitFor(t, "a connection through node 0", func() bool {
			conn, err := tryConnect(c.ConnString(0, c.ProxyPassword, db))
			if err != nil {
				return false
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			return true
		})
	}
	waitFor(t, "node 1 to count node 0's and its own connections from this IP", func() bool {
		return loginCode(t, c.ConnString(1, c.ProxyPassword, db)) == "53300"
	})
}
