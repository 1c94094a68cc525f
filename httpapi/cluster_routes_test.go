package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/httpapi"
	"tdb/httpapi/apitest"
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

// statusAsksEveryNode is a cluster whose full status fails, as one that
// asks a node that does not answer may.
type statusAsksEveryNode struct{ *apitest.Cluster }

func (statusAsksEveryNode) Status(context.Context) (httpapi.ClusterStatus, error) {
	return httpapi.ClusterStatus{}, errors.New("asked every node")
}

func (statusAsksEveryNode) Health() (string, error) { return "node1", nil }

// TestHealthzAsksThisNodeOnly: /healthz, which load balancers call every
// second and anyone may call, answers from the node itself, not from the
// cluster's status (which calls every other node).
func TestHealthzAsksThisNodeOnly(t *testing.T) {
	e := newBareEnv(t, nil, func(c httpapi.Cluster) http.Handler {
		return httpapi.New(statusAsksEveryNode{c.(*apitest.Cluster)}, t.Logf)
	})
	if h := e.call("", "GET", "/healthz", nil, 200); h["ok"] != true || h["node_id"] != "node1" {
		t.Fatalf("healthz %v", h)
	}
}

// TestClusterBackup: the operator's key gets a backup that reads back and
// holds a write acknowledged just before it; no other key gets one.
func TestClusterBackup(t *testing.T) {
	e := newEnv(t, nil)
	e.call(adminKey, "PATCH", "/v1/cluster/settings", map[string]any{"ban_sec": 321}, 200)
	status, data := e.do(adminKey, "GET", "/v1/cluster/backup", nil)
	if status != 200 {
		t.Fatalf("backup: status %d: %s", status, data)
	}
	b, err := fsm.ReadBackup(data)
	if err != nil {
		t.Fatalf("read the backup: %v", err)
	}
	f := fsm.New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(b.Snapshot))); err != nil {
		t.Fatal(err)
	}
	var ban int64
	f.View(func(s *fsm.State) { ban = s.Settings.BanSec })
	if ban != 321 || b.AppliedIndex != f.AppliedIndex() || b.AppliedIndex == 0 {
		t.Fatalf("backup at index %d holds ban_sec %d, want 321", b.AppliedIndex, ban)
	}
	for _, key := range []string{e.proxyPass, e.key("admin", "project")} {
		if status, data := e.do(key, "GET", "/v1/cluster/backup", nil); status != http.StatusForbidden {
			t.Fatalf("backup with a project key: status %d: %s", status, data)
		}
	}
}

// lagging is a cluster whose replica cannot catch up with its leader.
type lagging struct{ *apitest.Cluster }

func (lagging) Sync(context.Context) error { return errors.New("no leader") }

// TestClusterBackupNeedsTheLeader: a node that cannot catch up gives no
// backup, which could miss acknowledged writes.
func TestClusterBackupNeedsTheLeader(t *testing.T) {
	e := newBareEnv(t, nil, func(c httpapi.Cluster) http.Handler {
		return httpapi.New(lagging{c.(*apitest.Cluster)}, t.Logf)
	})
	status, data := e.do(adminKey, "GET", "/v1/cluster/backup", nil)
	if code, msg := errorOf(t, data); status != http.StatusServiceUnavailable || code != "unavailable" || !strings.Contains(msg, "consistent backup") {
		t.Fatalf("backup from a lagging node: status %d: %s", status, data)
	}
}

// TestSettingsPatchSettingNothingCommitsNothing: a settings PATCH whose
// body sets no field answers the settings as they are and commits no raft
// entry: the applied index and the state stay as they were.
func TestSettingsPatchSettingNothingCommitsNothing(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := e.c.FSM().WaitFor(ctx, func(st *fsm.State) bool { // the workspaces' databases settled
		for _, d := range st.Databases {
			if d.Status == fsm.StatusProvisioning {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	e.call(adminKey, "PATCH", "/v1/cluster/settings", map[string]any{"ban_sec": 120}, 200)
	e.call(e.proxyPass, "PATCH", "/v1/workspaces/myapp/settings", map[string]any{"max_connections": 3}, 200)
	for _, tc := range []struct {
		name, key, path, body, field string
		want                         float64
	}{
		{name: "cluster, empty object", key: adminKey, path: "/v1/cluster/settings", body: `{}`, field: "ban_sec", want: 120},
		{name: "cluster, null fields", key: adminKey, path: "/v1/cluster/settings", body: `{"ban_sec": null}`, field: "ban_sec", want: 120},
		{name: "workspace, empty object", key: e.proxyPass, path: "/v1/workspaces/myapp/settings", body: `{}`, field: "max_connections", want: 3},
		{name: "workspace, null fields", key: e.proxyPass, path: "/v1/workspaces/myapp/settings", body: `{"max_connections": null}`, field: "max_connections", want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			index := e.c.FSM().AppliedIndex()
			hash, err := e.c.FSM().Hash()
			if err != nil {
				t.Fatal(err)
			}
			got := e.call(tc.key, "PATCH", tc.path, tc.body, 200)
			if got[tc.field] != tc.want {
				t.Fatalf("%s is %v, want %v, as it was: %v", tc.field, got[tc.field], tc.want, got)
			}
			if got["raft_index"] != nil {
				t.Fatalf("a raft_index for a change that committed nothing: %v", got)
			}
			after, err := e.c.FSM().Hash()
			if err != nil {
				t.Fatal(err)
			}
			if now := e.c.FSM().AppliedIndex(); now != index || after != hash {
				t.Fatalf("applied index %d, state %s after the PATCH; %d, %s before", now, after, index, hash)
			}
		})
	}
	// The workspace must still be one the key reaches.
	e.call(e.proxyPass, "PATCH", "/v1/workspaces/nosuch/settings", `{}`, 404)
}
