package httpapi_test

import (
	"testing"
)

func TestCluster(t *testing.T) {
	e := newEnv(t, nil)
	st := e.call(e.proxyPass, "GET", "/v1/cluster/status", nil, 200)
	if st["leader_id"] != "node1" || len(st["nodes"].([]any)) != 1 {
		t.Fatalf("status %v", st)
	}
	s := e.call(adminKey, "PATCH", "/v1/cluster/settings", map[string]any{"ban_sec": 120, "max_ban_sec": 7200}, 200)
	want := map[string]any{"ban_sec": 120.0, "max_ban_sec": 7200.0, "max_conns_per_ip": 500.0, "auth_fail_threshold": 10.0, "auth_fail_window_sec": 60.0}
	for k, v := range want {
		if s[k] != v {
			t.Fatalf("settings %v, want %v", s, want)
		}
	}
	if s["raft_index"] == nil {
		t.Fatalf("no raft_index: %v", s)
	}
	if got := e.call(e.proxyPass, "GET", "/v1/cluster/settings", nil, 200); got["ban_sec"] != 120.0 {
		t.Fatalf("settings %v", got)
	}
	h := e.call("", "GET", "/healthz", nil, 200)
	if h["ok"] != true || h["node_id"] != "node1" {
		t.Fatalf("healthz %v", h)
	}
}
