package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tdb/internal/freeport"
	"tdb/internal/testcluster"
	"tdb/internal/testpg"
)

// binNode is one `tdb server` process.
type binNode struct {
	id                       string
	dir                      string
	wire, http, raft, gossip string
	args                     []string
	cmd                      *exec.Cmd
	log                      *os.File
}

func freePort(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (b *binNode) start(t *testing.T, bin string) {
	t.Helper()
	b.cmd = exec.Command(bin, b.args...)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.Env = append(os.Environ(), "TDB_ADMIN_KEY="+testcluster.AdminKey)
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := b.cmd
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// api calls a node's control plane and returns the status and body.
func api(b *binNode, method, path, key string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+b.http+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func mustAPI(t *testing.T, b *binNode, method, path, key string, body, out any) {
	t.Helper()
	status, raw, err := api(b, method, path, key, body)
	if err != nil || status/100 != 2 {
		t.Fatalf("%s %s on %s: %d %s %v", method, path, b.id, status, raw, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

type binStatus struct {
	LeaderID string `json:"leader_id"`
	Nodes    []struct {
		ID        string `json:"id"`
		Voter     bool   `json:"voter"`
		Alive     bool   `json:"alive"`
		RaftIndex uint64 `json:"raft_index"`
	} `json:"nodes"`
}

// TestClusterBinaryKill9: three `tdb server` processes; the leader is
// killed with SIGKILL; writes through a survivor resume on a new leader with
// nothing acknowledged lost; the killed node restarts from its data dir and
// catches up.
func TestClusterBinaryKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tdb binary: not under testing.Short")
	}
	t.Parallel()
	pg := testpg.Shared(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tdb")
	build := exec.Command("go", "build", "-o", bin, "tdb/cmd/tdb")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	nodes := make([]*binNode, 3)
	for i := range nodes {
		b := &binNode{id: fmt.Sprintf("b%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("b%d", i+1)),
			wire: freePort(t), http: freePort(t), raft: freePort(t), gossip: freePort(t)}
		b.args = []string{"server", "--node-id", b.id, "--data-dir", b.dir, "--wire-addr", b.wire, "--http-addr", b.http,
			"--raft-addr", b.raft, "--gossip-addr", b.gossip, "--allow-plaintext"}
		if i > 0 {
			b.args = append(b.args, "--join", nodes[0].gossip)
		}
		f, err := os.Create(filepath.Join(dir, b.id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		b.log = f
		nodes[i] = b
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, b := range nodes {
				data, _ := os.ReadFile(b.log.Name())
				t.Logf("--- %s log:\n%s", b.id, tailBytes(data, 3000))
			}
		}
	})
	status := func(b *binNode) (binStatus, bool) {
		var st binStatus
		code, raw, err := api(b, "GET", "/v1/cluster/status", testcluster.AdminKey, nil)
		if err != nil || code != 200 || json.Unmarshal(raw, &st) != nil {
			return st, false
		}
		return st, true
	}
	for _, b := range nodes {
		b.start(t, bin)
		testcluster.Eventually(t, b.id+" serving", func() bool { _, ok := status(b); return ok })
	}
	testcluster.Eventually(t, "three voters", func() bool {
		st, ok := status(nodes[0])
		voters := 0
		for _, n := range st.Nodes {
			if n.Voter && n.Alive {
				voters++
			}
		}
		return ok && voters == 3
	})

	mustAPI(t, nodes[1], "POST", "/v1/backends", testcluster.AdminKey, map[string]string{"name": "local", "url": pg.URL()}, nil)
	var proj struct {
		ProjectID     string `json:"project_id"`
		ProxyPassword string `json:"proxy_password"`
	}
	mustAPI(t, nodes[2], "POST", "/v1/projects", testcluster.AdminKey, map[string]string{"name": "demo"}, &proj)
	mustAPI(t, nodes[1], "POST", "/v1/workspaces", proj.ProxyPassword, map[string]string{"name": "myapp"}, nil)

	st, _ := status(nodes[0])
	leader := -1
	for i, b := range nodes {
		if b.id == st.LeaderID {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("leader %q is none of the nodes", st.LeaderID)
	}
	survivor := nodes[(leader+1)%3]
	var acked []string
	write := func(name string) bool {
		code, _, err := api(survivor, "POST", "/v1/apikeys", proj.ProxyPassword,
			map[string]any{"name": name, "role": "read", "scope_type": "workspace", "scope_values": []string{"myapp"}})
		return err == nil && code/100 == 2
	}
	for i := range 5 {
		name := fmt.Sprintf("before_%d", i)
		if !write(name) {
			t.Fatalf("write %s failed with a healthy cluster", name)
		}
		acked = append(acked, name)
	}

	killed := nodes[leader]
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.cmd.Wait()
	start, failed := time.Now(), 0
	for i := 0; len(acked) < 10; i++ {
		name := fmt.Sprintf("after_%d", i)
		if write(name) {
			if len(acked) == 5 {
				t.Logf("writes resumed %s after kill -9 of the leader (%d failed meanwhile)", time.Since(start).Round(time.Millisecond), failed)
			}
			acked = append(acked, name)
			continue
		}
		failed++
		if time.Since(start) > time.Minute {
			t.Fatal("writes never resumed after the leader was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	names := func(b *binNode) map[string]bool {
		var list []struct{ Name string }
		code, raw, err := api(b, "GET", "/v1/apikeys", proj.ProxyPassword, nil)
		out := map[string]bool{}
		if err == nil && code == 200 && json.Unmarshal(raw, &list) == nil {
			for _, k := range list {
				out[k.Name] = true
			}
		}
		return out
	}
	hasAll := func(b *binNode) bool {
		have := names(b)
		for _, n := range acked {
			if !have[n] {
				return false
			}
		}
		return true
	}
	if !hasAll(survivor) {
		t.Fatalf("the survivor lost acknowledged writes: has %v, acknowledged %v", names(survivor), acked)
	}

	killed.start(t, bin)
	testcluster.Eventually(t, "the killed node to restart and catch up", func() bool { return hasAll(killed) })
	testcluster.Eventually(t, "three alive voters again", func() bool {
		st, ok := status(killed)
		alive := 0
		for _, n := range st.Nodes {
			if n.Voter && n.Alive {
				alive++
			}
		}
		return ok && alive == 3
	})
	// A key created on another node logs in on the restarted one at once.
	var key struct{ Key string }
	mustAPI(t, survivor, "POST", "/v1/apikeys", proj.ProxyPassword,
		map[string]any{"role": "write", "scope_type": "workspace", "scope_values": []string{"myapp"}}, &key)
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(proj.ProjectID, key.Key), Host: killed.wire,
		Path: "/myapp_workspace", RawQuery: "sslmode=require"}
	if code := loginCode(t, u.String()); code != "" {
		t.Fatalf("login on the restarted node: %s", code)
	}
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
