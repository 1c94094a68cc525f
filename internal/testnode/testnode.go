// Package testnode starts a real single-node tdb cluster for tests: a node on
// random loopback ports with a temp data dir, a real PostgreSQL backend, and a
// demo project with the workspaces controlplane (control) and myapp (tenant).
package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/internal/pgserver"
	"tdb/internal/testpg"
	"tdb/node"
)

// Env is a running node with its backend and demo project.
type Env struct {
	Node          *node.Node
	PG            *pgserver.Server
	AdminKey      string
	ProjectID     string
	ProxyPassword string

	cfg node.Config // for Restart
}

// Start starts a node on a shared test PostgreSQL server (each Env has its own
// project, so physical databases never collide) and stops it at cleanup.
// configure, if given, may change the node config before start.
func Start(t testing.TB, configure ...func(*node.Config)) *Env {
	t.Helper()
	return start(t, false, configure)
}

// StartUnix is Start with the backend registered by its Unix socket
// (pgserver.LocalURL), as tdb dev registers its own PostgreSQL.
func StartUnix(t testing.TB, configure ...func(*node.Config)) *Env {
	t.Helper()
	return start(t, true, configure)
}

func start(t testing.TB, unixSocket bool, configure []func(*node.Config)) *Env {
	t.Helper()
	pg := testpg.Shared(t)
	backendURL := pg.URL()
	if unixSocket {
		backendURL = pg.LocalURL()
		if !strings.Contains(backendURL, "host=%2F") {
			t.Fatalf("the test PostgreSQL has no Unix socket: %s", backendURL)
		}
	}
	cfg := node.Config{
		NodeID:                 "n1",
		DataDir:                t.TempDir(),
		WireAddr:               "127.0.0.1:0",
		HTTPAddr:               "127.0.0.1:0",
		RaftAddr:               "127.0.0.1:0",
		Bootstrap:              true,
		AdminKey:               "sk_admin_test_0123456789abcdef0123456789",
		AllowLoopbackPlaintext: true,
		LogOutput:              io.Discard,
		Raft: node.RaftConfig{
			HeartbeatTimeout: 200 * time.Millisecond,
			ElectionTimeout:  200 * time.Millisecond,
		},
	}
	if os.Getenv("TDB_TEST_LOG") != "" {
		cfg.LogOutput = os.Stderr
	}
	for _, f := range configure {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	e := &Env{Node: n, PG: pg, AdminKey: cfg.AdminKey, cfg: cfg}
	t.Cleanup(func() {
		if e.Node != nil {
			_ = e.Node.Stop()
		}
	})

	backend := fmt.Sprintf("local%d", time.Now().UnixNano()%1e6)
	e.MustDo(t, "POST", "/v1/backends", e.AdminKey, "", map[string]string{"name": backend, "url": backendURL}, nil)
	var proj struct {
		ProjectID     string `json:"project_id"`
		ProxyPassword string `json:"proxy_password"`
	}
	e.MustDo(t, "POST", "/v1/projects", e.AdminKey, "", map[string]string{"name": "demo"}, &proj)
	e.ProjectID, e.ProxyPassword = proj.ProjectID, proj.ProxyPassword
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "controlplane", "mode": "control"}, nil)
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": "myapp", "mode": "tenant"}, nil)
	e.WaitReady(t)
	return e
}

// WaitReady waits until no physical database is still being provisioned.
func (e *Env) WaitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := e.Node.FSM().WaitFor(ctx, func(s *fsm.State) bool {
		for _, d := range s.Databases {
			if d.Status == fsm.StatusProvisioning {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("databases not provisioned: %v", err)
	}
}

// Do calls the control plane with a bearer key (and, for the admin key, a
// project header); it decodes a JSON response into out and returns the status.
func (e *Env) Do(t testing.TB, method, path, key, project string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+e.Node.HTTPAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if project != "" {
		req.Header.Set("X-Tdb-Project", project)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

// MustDo is Do that fails the test on a non-2xx status.
func (e *Env) MustDo(t testing.TB, method, path, key, project string, body, out any) {
	t.Helper()
	var raw json.RawMessage
	status := e.Do(t, method, path, key, project, body, &raw)
	if status/100 != 2 {
		t.Fatalf("%s %s: status %d: %s", method, path, status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// CreateTenant creates a tenant of myapp and returns its own key.
func (e *Env) CreateTenant(t testing.TB, name string) string {
	t.Helper()
	return e.CreateTenantOf(t, "myapp", name)
}

// CreateTenantOf creates a tenant of a blueprint and returns its own key.
func (e *Env) CreateTenantOf(t testing.TB, blueprint, name string) string {
	t.Helper()
	var resp struct {
		ConnectionString string `json:"connection_string"`
	}
	e.MustDo(t, "POST", "/v1/tenants", e.ProxyPassword, "", map[string]string{"name": name, "blueprint": blueprint}, &resp)
	u, err := url.Parse(resp.ConnectionString)
	if err != nil {
		t.Fatalf("parse connection string %q: %v", resp.ConnectionString, err)
	}
	pw, _ := u.User.Password()
	return pw
}

// CreateKey creates an API key with the project key and returns its secret.
func (e *Env) CreateKey(t testing.TB, role, scopeType string, values ...string) string {
	t.Helper()
	var resp struct {
		Key string `json:"key"`
	}
	body := map[string]any{"role": role, "scope_type": scopeType, "scope_values": values}
	e.MustDo(t, "POST", "/v1/apikeys", e.ProxyPassword, "", body, &resp)
	return resp.Key
}

// Physical is the physical database of a wire database name of the project
// (myapp__wayne, myapp_workspace), as the node's state records it.
func (e *Env) Physical(t testing.TB, database string) string {
	t.Helper()
	var name string
	e.Node.FSM().View(func(s *fsm.State) {
		if tg, ok := s.Resolve(e.ProjectID, database); ok && tg.Database != nil {
			name = tg.Database.Name
		}
	})
	if name == "" {
		t.Fatalf("database %s of project %s has no physical database", database, e.ProjectID)
	}
	return name
}

// ConnString is a libpq URL to the proxy for the project's user.
func (e *Env) ConnString(password, database, sslmode string) string {
	u := url.URL{
		Scheme:   "postgresql",
		User:     url.UserPassword(e.ProjectID, password),
		Host:     e.Node.BoundWireAddr(),
		Path:     "/" + database,
		RawQuery: "sslmode=" + sslmode,
	}
	return u.String()
}

// Restart stops the node and starts it again from the same data dir (and raft
// address), as after a crash or an upgrade; listeners get new ports.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	cfg := e.cfg
	cfg.RaftAddr = e.Node.Replica().Addr()
	cfg.PublicWireAddr = ""
	if err := e.Node.Stop(); err != nil {
		t.Fatalf("stop node: %v", err)
	}
	e.Node = nil
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart node: %v", err)
	}
	e.Node = n
}
