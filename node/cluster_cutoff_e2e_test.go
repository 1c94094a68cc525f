package node_test

import (
	"testing"

	"tdb/internal/testcluster"
)

// TestClusterCutOffNodeRefusesRevokedKeyOverHTTP: a node cut off from raft
// refuses wire logins (57P03) rather than accept a key whose revocation it
// has not applied; the HTTP query endpoint reaches the same tenant data, so
// it must not run a revoked key's SQL there either, nor take a write on a
// state it could not bring up to date. Reads of the local state (GET) stay
// served.
func TestClusterCutOffNodeRefusesRevokedKeyOverHTTP(t *testing.T) {
	t.Parallel()
	c, leader, p := partitionable(t)
	c.CreateTenant(t, leader, "cutoff")
	c.WaitReady(t)
	var created struct{ ID, Key string }
	c.MustDo(t, leader, "POST", "/v1/apikeys", c.ProxyPassword, "",
		map[string]any{"role": "read", "scope_type": "tenant", "scope_values": []string{"cutoff"}}, &created)
	query := map[string]any{"sql": "SELECT 1 AS one"}
	var e struct{ Code, Message string }
	if code := c.Do(t, p, "POST", "/v1/tenants/cutoff/query", created.Key, "", query, &e); code != 200 {
		t.Fatalf("query with a live key on %s: %d %+v", c.Members[p].ID, code, e)
	}

	cutOff(t, c, p)
	c.MustDo(t, leader, "DELETE", "/v1/apikeys/"+created.ID, c.ProxyPassword, "", nil, nil)

	e = struct{ Code, Message string }{}
	if code := c.Do(t, p, "POST", "/v1/tenants/cutoff/query", created.Key, "", query, &e); code != 503 {
		t.Fatalf("query with a key revoked while %s was cut off: %d %+v, want 503", c.Members[p].ID, code, e)
	}
	e = struct{ Code, Message string }{}
	if code := c.Do(t, p, "POST", "/v1/apikeys", c.ProxyPassword, "",
		map[string]any{"role": "read", "scope_type": "project"}, &e); code != 503 {
		t.Fatalf("write on the cut-off node: %d %+v, want 503", code, e)
	}
	var list []struct{ ID string }
	if code := c.Do(t, p, "GET", "/v1/apikeys", c.ProxyPassword, "", nil, &list); code != 200 {
		t.Fatalf("read on the cut-off node: %d", code)
	}

	c.Members[p].RaftProxy.Unblock()
	testcluster.Eventually(t, "the healed node to refuse the revoked key", func() bool {
		return c.Do(t, p, "POST", "/v1/tenants/cutoff/query", created.Key, "", query, nil) == 401
	})
}
