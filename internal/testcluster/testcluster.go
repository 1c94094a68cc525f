package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/gossip"
	"tdb/httpapi"
	"tdb/internal/freeport"
	"tdb/internal/pgserver"
	"tdb/internal/testpg"
	"tdb/node"
)

// AdminKey is the operator key every test cluster uses.
const AdminKey = "sk_admin_test_cluster_0123456789abcdef0123"

// Member is one node of the cluster; Node is nil while it is stopped.
type Member struct {
	ID        string
	Node      *node.Node
	RaftProxy *FaultProxy // WithRaftProxies only
	cfg       node.Config
	// releaseRaft frees the raft port, held from when the address was
	// chosen until the node binds it: while earlier members start, other
	// processes' connections could otherwise take it.
	releaseRaft func()
}

// Cluster is a running in-process cluster with its backend and demo project.
type Cluster struct {
	Members       []*Member
	PG            *pgserver.Server
	ProjectID     string
	ProxyPassword string
	opts          options
}

type options struct {
	raftProxies bool
	configure   []func(*node.Config)
}

// Option changes how Start builds the cluster.
type Option func(*options)

// WithRaftProxies puts a FaultProxy in front of each node's raft listener.
func WithRaftProxies() Option { return func(o *options) { o.raftProxies = true } }

// Configure changes every node's config before its first start.
func Configure(f func(*node.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, f) }
}

// Start starts n nodes: the first bootstraps, the others join it through
// gossip. It waits until all are raft voters, then registers the shared
// test PostgreSQL as a backend and creates the demo project with the
// workspaces controlplane (control) and myapp (tenant). Everything stops at
// cleanup.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{PG: testpg.Shared(t)}
	for _, o := range opts {
		o(&c.opts)
	}
	for i := range n {
		m := c.newMember(t, i)
		if i > 0 {
			m.cfg.Join = []string{c.Members[0].Node.GossipAddr()}
		}
		c.Members = append(c.Members, m)
		c.startMember(t, m, 60*time.Second)
	}
	Eventually(t, "every node a voter that knows the leader", func() bool { return c.converged(n) })

	backend := fmt.Sprintf("local%d", time.Now().UnixNano()%1e6)
	c.MustDo(t, 0, "POST", "/v1/backends", AdminKey, "", map[string]string{"name": backend, "url": c.PG.URL()}, nil)
	var proj struct {
		ProjectID     string `json:"project_id"`
		ProxyPassword string `json:"proxy_password"`
	}
	c.MustDo(t, 0, "POST", "/v1/projects", AdminKey, "", map[string]string{"name": "demo"}, &proj)
	c.ProjectID, c.ProxyPassword = proj.ProjectID, proj.ProxyPassword
	c.MustDo(t, 0, "POST", "/v1/workspaces", c.ProxyPassword, "", map[string]string{"name": "controlplane", "mode": "control"}, nil)
	c.MustDo(t, 0, "POST", "/v1/workspaces", c.ProxyPassword, "", map[string]string{"name": "myapp", "mode": "tenant"}, nil)
	c.WaitReady(t)
	return c
}

// newMember builds member i's config (not started).
func (c *Cluster) newMember(t testing.TB, i int) *Member {
	t.Helper()
	var logOut io.Writer = io.Discard
	if os.Getenv("TDB_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	m := &Member{ID: fmt.Sprintf("n%d", i+1)}
	raftAddr, release, err := freeport.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	m.releaseRaft = release
	t.Cleanup(m.freeRaftPort) // a member that never started
	m.cfg = node.Config{
		NodeID:                 m.ID,
		DataDir:                t.TempDir(),
		WireAddr:               "127.0.0.1:0",
		HTTPAddr:               "127.0.0.1:0",
		RaftAddr:               raftAddr,
		GossipAddr:             "127.0.0.1:0",
		Bootstrap:              i == 0,
		AdminKey:               AdminKey,
		AllowLoopbackPlaintext: true,
		LogOutput:              prefixed(logOut, m.ID),
		Raft: node.RaftConfig{
			HeartbeatTimeout: 300 * time.Millisecond,
			ElectionTimeout:  300 * time.Millisecond,
			ApplyTimeout:     5 * time.Second,
		},
		Cluster: node.ClusterConfig{
			ReconcileInterval:  200 * time.Millisecond,
			LeaderContactLimit: 2 * time.Second,
			CatchUpTimeout:     2 * time.Second,
			InternalTimeout:    5 * time.Second,
			Gossip: gossip.Config{
				ProbeInterval:   100 * time.Millisecond,
				ProbeTimeout:    50 * time.Millisecond,
				GossipInterval:  30 * time.Millisecond,
				SuspicionMult:   3,
				ResyncInterval:  100 * time.Millisecond,
				RejoinInterval:  300 * time.Millisecond,
				RefreshInterval: time.Second,
			},
		},
	}
	if c.opts.raftProxies {
		m.RaftProxy = NewFaultProxy(t, m.cfg.RaftAddr)
		m.cfg.Raft.Advertise = m.RaftProxy.Addr()
	}
	for _, f := range c.opts.configure {
		f(&m.cfg)
	}
	return m
}

// Add starts one more node, configured by the cluster's options and then by
// configure, joining the first running member's gossip. It waits at most
// leaderWait for the node to learn of a leader (a node the leader does not
// add never does) and returns its index.
func (c *Cluster) Add(t testing.TB, leaderWait time.Duration, configure func(*node.Config)) int {
	t.Helper()
	m := c.newMember(t, len(c.Members))
	if configure != nil {
		configure(&m.cfg)
	}
	for _, o := range c.Members {
		if o.Node != nil {
			m.cfg.Join = []string{o.Node.GossipAddr()}
			break
		}
	}
	c.Members = append(c.Members, m)
	c.startMember(t, m, leaderWait)
	return len(c.Members) - 1
}

// Reconfigure changes stopped member i's config for its next start.
func (c *Cluster) Reconfigure(t testing.TB, i int, f func(*node.Config)) {
	t.Helper()
	if c.Members[i].Node != nil {
		t.Fatalf("reconfigure %s: still running", c.Members[i].ID)
	}
	f(&c.Members[i].cfg)
}

func (c *Cluster) startMember(t testing.TB, m *Member, timeout time.Duration) {
	t.Helper()
	nd, err := m.start(timeout)
	if err != nil {
		t.Fatalf("start %s: %v", m.ID, err)
	}
	c.adopt(t, m, nd)
}

// start starts the member's node; adopt then records it.
func (m *Member) start(timeout time.Duration) (*node.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m.freeRaftPort()
	return node.Start(ctx, m.cfg)
}

// adopt records a started node as member m's, until cleanup.
func (c *Cluster) adopt(t testing.TB, m *Member, nd *node.Node) {
	m.Node = nd
	// Restarts come back on the same addresses, as a real node does.
	m.cfg.WireAddr, m.cfg.HTTPAddr, m.cfg.GossipAddr = nd.BoundWireAddr(), nd.HTTPAddr(), nd.GossipAddr()
	t.Cleanup(func() {
		if m.Node == nd {
			_ = nd.Stop()
			m.Node = nil
		}
	})
}

// freeRaftPort releases the member's reserved raft port, once.
func (m *Member) freeRaftPort() {
	if m.releaseRaft != nil {
		m.releaseRaft()
		m.releaseRaft = nil
	}
}

// converged reports whether the raft configuration has want voters and every
// running node knows the same leader.
func (c *Cluster) converged(want int) bool {
	leader := ""
	for _, m := range c.Members {
		if m.Node == nil {
			continue
		}
		st, err := m.Node.Status(context.Background())
		if err != nil || st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
			return false
		}
		leader = st.LeaderID
		voters := 0
		for _, ns := range st.Nodes {
			if ns.Voter {
				voters++
			}
		}
		if voters != want {
			return false
		}
	}
	return leader != ""
}

// Stop stops member i (a clean shutdown without leaving the cluster).
func (c *Cluster) Stop(t testing.TB, i int) {
	t.Helper()
	m := c.Members[i]
	if m.Node == nil {
		return
	}
	if err := m.Node.Stop(); err != nil {
		t.Logf("stop %s: %v", m.ID, err)
	}
	m.Node = nil
}

// Restart starts a stopped member again from its data dir on its old
// addresses, joining nothing but its saved gossip peers.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.RestartWithin(t, i, 60*time.Second)
}

// RestartWithin restarts member i as Restart does, waiting at most
// leaderWait for it to learn of a leader (a node the leader does not take
// back never does).
func (c *Cluster) RestartWithin(t testing.TB, i int, leaderWait time.Duration) {
	t.Helper()
	m := c.Members[i]
	if m.Node != nil {
		t.Fatalf("restart %s: still running", m.ID)
	}
	m.cfg.Join = nil
	c.startMember(t, m, leaderWait)
}

// RestartTogether restarts stopped members at once, as Restart does each:
// a restarted node waits for a leader, which may need the others.
func (c *Cluster) RestartTogether(t testing.TB, is ...int) {
	t.Helper()
	nodes := make([]*node.Node, len(is))
	errs := make([]error, len(is))
	var wg sync.WaitGroup
	for k, i := range is {
		m := c.Members[i]
		if m.Node != nil {
			t.Fatalf("restart %s: still running", m.ID)
		}
		m.cfg.Join = nil
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[k], errs[k] = m.start(60 * time.Second)
		}()
	}
	wg.Wait()
	for k, i := range is {
		if errs[k] == nil {
			c.adopt(t, c.Members[i], nodes[k])
		}
	}
	for k, i := range is {
		if errs[k] != nil {
			t.Fatalf("restart %s: %v", c.Members[i].ID, errs[k])
		}
	}
}

// Leader returns the index of the member that is raft leader now, or -1.
func (c *Cluster) Leader() int {
	for i, m := range c.Members {
		if m.Node != nil && m.Node.Replica().IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until some running member other than those in not is
// the leader, and returns its index.
func (c *Cluster) WaitLeader(t testing.TB, not ...int) int {
	t.Helper()
	leader := -1
	Eventually(t, "a leader", func() bool {
		leader = c.Leader()
		for _, x := range not {
			if leader == x {
				return false
			}
		}
		return leader >= 0
	})
	return leader
}

// WaitReady waits until no physical database is still being provisioned on
// any running node.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	for _, m := range c.Members {
		if m.Node == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := m.Node.FSM().WaitFor(ctx, func(s *fsm.State) bool {
			for _, d := range s.Databases {
				if d.Status == fsm.StatusProvisioning {
					return false
				}
			}
			return true
		})
		cancel()
		if err != nil {
			t.Fatalf("%s: databases not provisioned: %v", m.ID, err)
		}
	}
}

// Do calls member i's control plane with a bearer key; it decodes a JSON
// response into out and returns the status.
func (c *Cluster) Do(t testing.TB, i int, method, path, key, project string, body, out any) int {
	t.Helper()
	status, raw, err := c.do(i, method, path, key, project, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, c.Members[i].ID, err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return status
}

func (c *Cluster) do(i int, method, path, key, project string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	m := c.Members[i]
	if m.Node == nil {
		return 0, nil, fmt.Errorf("%s is stopped", m.ID)
	}
	req, err := http.NewRequest(method, "http://"+m.Node.HTTPAddr()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if project != "" {
		req.Header.Set("X-Tdb-Project", project)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// MustDo is Do that fails the test on a non-2xx status.
func (c *Cluster) MustDo(t testing.TB, i int, method, path, key, project string, body, out any) {
	t.Helper()
	var raw json.RawMessage
	status := c.Do(t, i, method, path, key, project, body, &raw)
	if status/100 != 2 {
		t.Fatalf("%s %s on %s: status %d: %s", method, path, c.Members[i].ID, status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// CreateKey creates an API key through member i and returns its secret.
func (c *Cluster) CreateKey(t testing.TB, i int, role, scopeType string, values ...string) string {
	t.Helper()
	var resp struct {
		Key string `json:"key"`
	}
	body := map[string]any{"role": role, "scope_type": scopeType, "scope_values": values}
	c.MustDo(t, i, "POST", "/v1/apikeys", c.ProxyPassword, "", body, &resp)
	return resp.Key
}

// CreateTenant creates a tenant of myapp through member i and returns its key.
func (c *Cluster) CreateTenant(t testing.TB, i int, name string) string {
	t.Helper()
	var resp struct {
		ConnectionString string `json:"connection_string"`
	}
	c.MustDo(t, i, "POST", "/v1/tenants", c.ProxyPassword, "", map[string]string{"name": name, "blueprint": "myapp"}, &resp)
	u, err := url.Parse(resp.ConnectionString)
	if err != nil {
		t.Fatalf("parse connection string %q: %v", resp.ConnectionString, err)
	}
	pw, _ := u.User.Password()
	return pw
}

// Status is member i's view of the cluster.
func (c *Cluster) Status(t testing.TB, i int) httpapi.ClusterStatus {
	t.Helper()
	st, err := c.Members[i].Node.Status(context.Background())
	if err != nil {
		t.Fatalf("status of %s: %v", c.Members[i].ID, err)
	}
	return st
}

// ConnString is a libpq URL to member i's wire proxy for the project's user.
func (c *Cluster) ConnString(i int, password, database string) string {
	u := url.URL{
		Scheme:   "postgresql",
		User:     url.UserPassword(c.ProjectID, password),
		Host:     c.Members[i].cfg.WireAddr,
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Eventually polls cond until it holds, failing the test after a generous
// bound: a liveness check, not a timing assertion.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// prefixed writes each line with the node id in front.
func prefixed(w io.Writer, id string) io.Writer {
	if w == io.Discard {
		return w
	}
	return &prefixWriter{w: w, prefix: []byte(id + " | ")}
}

type prefixWriter struct {
	w      io.Writer
	prefix []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	_, err := p.w.Write(append(append([]byte{}, p.prefix...), b...))
	return len(b), err
}
