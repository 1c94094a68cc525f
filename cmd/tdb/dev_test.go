package main

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tdb/internal/syncbuf"
	"tdb/internal/testpg"
)

// devRun is one `tdb dev` run in a goroutine.
type devRun struct {
	out    *syncbuf.Buffer
	cancel context.CancelFunc
	done   chan error
}

func startDev(dataDir string) *devRun { return startDevRestore(dataDir, "") }

// startDevRestore starts `tdb dev --restore backup` ("" for none).
func startDevRestore(dataDir, backup string) *devRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &devRun{out: &syncbuf.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	o := devOptions{dataDir: dataDir, wireAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", pgMaxConnections: 50, restore: backup}
	go func() { r.done <- runDev(ctx, r.out, o) }()
	return r
}

// ready waits until the run says it is ready (nil) or ends (its error).
func (r *devRun) ready(t *testing.T) error {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(r.out.String(), "tdb dev is ready") {
		select {
		case err := <-r.done:
			r.done <- err
			if err == nil {
				t.Fatalf("tdb dev ended before it was ready:\n%s", r.out)
			}
			return err
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tdb dev not ready after 2 minutes:\n%s", r.out)
		}
	}
	return nil
}

func (r *devRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Logf("tdb dev: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("tdb dev did not stop")
	}
}

// readEnv reads DIR/env into a map.
func readEnv(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

// TestDevRestartWithPostgresPortTaken: the node reaches the local PostgreSQL
// as the backend registered on the first run, on that run's port. When
// another process holds that port at a restart, tdb dev must not come up
// with PostgreSQL on another port, where the node does not reach it (every
// tenant create and login failed with "could not connect to the database
// backend"): it says which port is taken instead.
func TestDevRestartWithPostgresPortTaken(t *testing.T) {
	dataDir := filepath.Join(testpg.TempDir(t), "d")
	r := startDev(dataDir)
	if err := r.ready(t); err != nil {
		t.Fatalf("first run: %v", err)
	}
	u, err := url.Parse(readEnv(t, dataDir)["TDB_BACKEND_URL"])
	if err != nil {
		t.Fatal(err)
	}
	r.stop(t)

	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatalf("hold the PostgreSQL port %s: %v", u.Host, err)
	}
	defer l.Close()

	r = startDev(dataDir)
	defer r.stop(t)
	if err := r.ready(t); err != nil {
		if !strings.Contains(err.Error(), "port "+u.Port()) {
			t.Fatalf("restart with port %s taken: %v; want an error naming the port", u.Port(), err)
		}
		return
	}
	// It came up: its backend must then work.
	env := readEnv(t, dataDir)
	api := &devClient{base: env["TDB_API_URL"], key: env["TDB_API_KEY"]}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = api.do(ctx, "POST", "/v1/tenants", "", map[string]string{"blueprint": "myapp", "name": "wayne"}, nil)
	if err != nil {
		t.Fatalf("tdb dev came up with its PostgreSQL port %s taken, and creating a tenant fails: %v", u.Port(), err)
	}
}
