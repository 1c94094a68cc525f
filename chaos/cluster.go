package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/internal/faultnet"
	"tdb/node"
)

// defaultAdminKey is the Procfile's default operator key, used when the
// environment sets no TDB_ADMIN_KEY.
const defaultAdminKey = "sk_local_cluster_admin_0123456789abcdef01234567"

// member is one `tdb server` process of the run.
type member struct {
	name                   string
	argv                   []string
	http, wire, raft, goss string
	proxy                  *faultnet.Proxy
	logPath                string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
}

// cluster is the running processes of a chaos run.
type cluster struct {
	dir      string
	bin      string
	adminKey string
	secret   string // cluster secret, for /internal calls
	env      []string
	pgCmd    *exec.Cmd
	pgDone   chan struct{}
	pgURL    string
	members  []*member
	net      *netSim
	client   *http.Client
	logf     func(format string, args ...any)
}

// startCluster builds nothing: it starts the Procfile's pg and `tdb server`
// processes from bin, rewritten into dir (rewrite.go), with a raft proxy in
// front of each node, and waits until the three are voters with a leader.
func startCluster(ctx context.Context, procfile, bin, dir string, extraEnv []string, logf func(string, ...any)) (*cluster, error) {
	f, err := os.Open(procfile)
	if err != nil {
		return nil, errors.Wrap(err, "open Procfile")
	}
	procs, err := ParseProcfile(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, bin: bin, logf: logf, client: &http.Client{Timeout: 15 * time.Second}}
	c.adminKey = os.Getenv("TDB_ADMIN_KEY")
	if c.adminKey == "" {
		c.adminKey = defaultAdminKey
	}
	c.secret = node.DeriveClusterSecret(c.adminKey)
	c.env = append(append(os.Environ(), "TDB_ADMIN_KEY="+c.adminKey), extraEnv...)
	c.net = newNetSim(c.pids)
	m := newRemapper()
	defer m.release()
	var pg *Process
	var servers []Process
	for i, p := range procs {
		switch {
		case strings.Contains(p.Command, "tdb pg"):
			pg = &procs[i]
		case strings.Contains(p.Command, "tdb server"):
			servers = append(servers, p)
		}
	}
	if pg == nil || len(servers) != 3 {
		return nil, errors.Newf("Procfile %s: want a `tdb pg` process and three `tdb server` processes", procfile)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}

	pgArgv, err := rewriteCommand(*pg, bin, dir, m)
	if err != nil {
		return nil, err
	}
	m.release()
	if err := c.startPG(ctx, pg.Name, pgArgv); err != nil {
		c.stop()
		return nil, err
	}
	for _, p := range servers {
		argv, err := rewriteCommand(p, bin, dir, m)
		if err != nil {
			c.stop()
			return nil, err
		}
		mb := &member{name: p.Name, argv: argv, logPath: filepath.Join(dir, "logs", p.Name+".log"),
			http: flagValue(argv, "--http-addr"), wire: flagValue(argv, "--wire-addr"),
			raft: flagValue(argv, "--raft-addr"), goss: flagValue(argv, "--gossip-addr")}
		if mb.http == "" || mb.wire == "" || mb.raft == "" {
			c.stop()
			return nil, errors.Newf("process %s: needs --http-addr, --wire-addr and --raft-addr", p.Name)
		}
		if mb.proxy, err = c.net.addProxy(mb.name, mb.raft); err != nil {
			c.stop()
			return nil, err
		}
		mb.argv = append(mb.argv, "--raft-advertise", mb.proxy.Addr())
		c.members = append(c.members, mb)
	}
	m.release() // the proxies hold their own ports by now
	for _, mb := range c.members {
		logf("start %s: %s", mb.name, strings.Join(mb.argv[1:], " "))
		if err := c.start(mb); err != nil {
			c.stop()
			return nil, err
		}
		if err := c.waitHTTP(ctx, mb, 60*time.Second); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitVoters(ctx, 90*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) startPG(ctx context.Context, name string, argv []string) error {
	logPath := filepath.Join(c.dir, "logs", name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	dataDir := flagValue(argv, "--data-dir")
	c.pgCmd = exec.Command(argv[0], argv[1:]...)
	c.pgCmd.Stdout, c.pgCmd.Stderr = lf, lf
	c.pgCmd.Env = c.env
	c.pgCmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.pgCmd.Start(); err != nil {
		lf.Close()
		return errors.Wrap(err, "start the backend PostgreSQL")
	}
	c.pgDone = make(chan struct{})
	go func() { _ = c.pgCmd.Wait(); lf.Close(); close(c.pgDone) }()
	c.logf("start %s: %s", name, strings.Join(argv[1:], " "))
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(filepath.Join(dataDir, "url")); err == nil && len(bytes.TrimSpace(data)) > 0 {
			c.pgURL = string(bytes.TrimSpace(data))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.pgDone:
			return errors.Newf("the backend PostgreSQL exited; see %s", logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.Newf("the backend PostgreSQL did not start; see %s", logPath)
}

// start runs a member's process (again) with its log appended to.
func (c *cluster) start(mb *member) error {
	lf, err := os.OpenFile(mb.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "---- chaos: start %s at %s\n", mb.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(mb.argv[0], mb.argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return errors.Wrapf(err, "start %s", mb.name)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); lf.Close(); close(exited) }()
	mb.mu.Lock()
	mb.cmd, mb.exited, mb.stopped = cmd, exited, false
	mb.mu.Unlock()
	return nil
}

// running reports whether the member's process is alive (stopped counts).
func (mb *member) running() bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.cmd == nil {
		return false
	}
	select {
	case <-mb.exited:
		return false
	default:
		return true
	}
}

// kill9 kills the member's process with SIGKILL and waits for it.
func (c *cluster) kill9(mb *member) {
	mb.mu.Lock()
	cmd, exited := mb.cmd, mb.exited
	mb.stopped = false
	mb.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// signal sends SIGSTOP or SIGCONT.
func (c *cluster) signal(mb *member, sig syscall.Signal) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.cmd == nil {
		return
	}
	_ = mb.cmd.Process.Signal(sig)
	mb.stopped = sig == syscall.SIGSTOP
}

// pids maps the running members' pids to their names (for netSim).
func (c *cluster) pids() map[int]string {
	out := map[int]string{}
	for _, mb := range c.members {
		mb.mu.Lock()
		if mb.cmd != nil && mb.cmd.Process != nil {
			out[mb.cmd.Process.Pid] = mb.name
		}
		mb.mu.Unlock()
	}
	return out
}

func (c *cluster) names() []string {
	var out []string
	for _, mb := range c.members {
		out = append(out, mb.name)
	}
	return out
}

// stop ends every process: SIGCONT for stopped ones, SIGTERM, then SIGKILL
// after a grace period; the backend last.
func (c *cluster) stop() {
	if c.net != nil {
		c.net.close()
	}
	var wg sync.WaitGroup
	for _, mb := range c.members {
		mb.mu.Lock()
		cmd, exited := mb.cmd, mb.exited
		mb.mu.Unlock()
		if cmd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-exited
			}
		}()
	}
	wg.Wait()
	if c.pgDone != nil {
		_ = syscall.Kill(-c.pgCmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.pgDone:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-c.pgCmd.Process.Pid, syscall.SIGKILL)
			<-c.pgDone
		}
	}
}

// waitHTTP waits until the member answers /healthz.
func (c *cluster) waitHTTP(ctx context.Context, mb *member, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if code, _, err := c.call(ctx, mb, "GET", "/healthz", "", nil); err == nil && code == 200 {
			return nil
		}
		if !mb.running() {
			return errors.Newf("%s exited; see %s", mb.name, mb.logPath)
		}
		if time.Now().After(deadline) {
			return errors.Newf("%s did not answer /healthz within %s; see %s", mb.name, limit, mb.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// nodeStatus is a node's /internal/status answer.
type nodeStatus struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	AppliedIndex uint64 `json:"applied_index"`
}

// status asks one member for its raft role and applied index.
func (c *cluster) status(ctx context.Context, mb *member) (nodeStatus, error) {
	var st nodeStatus
	code, raw, err := c.callTimeout(ctx, mb, "GET", "/internal/status", c.secret, nil, 2*time.Second)
	if err != nil {
		return st, err
	}
	if code != 200 {
		return st, errors.Newf("%s /internal/status: %d %s", mb.name, code, raw)
	}
	return st, json.Unmarshal(raw, &st)
}

// leader returns the member that says it is the raft leader, or nil.
func (c *cluster) leader(ctx context.Context) *member {
	for _, mb := range c.members {
		if st, err := c.status(ctx, mb); err == nil && st.Role == "leader" {
			return mb
		}
	}
	return nil
}

// waitVoters waits until the cluster status lists three alive voters and a
// leader.
func (c *cluster) waitVoters(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var st struct {
			LeaderID string `json:"leader_id"`
			Nodes    []struct {
				Voter bool `json:"voter"`
				Alive bool `json:"alive"`
			} `json:"nodes"`
		}
		code, raw, err := c.call(ctx, c.members[0], "GET", "/v1/cluster/status", c.adminKey, nil)
		if err == nil && code == 200 && json.Unmarshal(raw, &st) == nil && st.LeaderID != "" {
			voters := 0
			for _, n := range st.Nodes {
				if n.Voter && n.Alive {
					voters++
				}
			}
			if voters == len(c.members) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.Newf("the cluster did not reach %d voters within %s", len(c.members), limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// call sends one HTTP request to a member with a bearer key and returns the
// status and body.
func (c *cluster) call(ctx context.Context, mb *member, method, path, key string, body any) (int, []byte, error) {
	return c.callTimeout(ctx, mb, method, path, key, body, 15*time.Second)
}

func (c *cluster) callTimeout(ctx context.Context, mb *member, method, path, key string, body any, timeout time.Duration) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+mb.http+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, raw, err
}
