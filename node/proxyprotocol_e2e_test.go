package node_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pires/go-proxyproto"

	"tdb/internal/testnode"
	"tdb/node"
	"tdb/querylog"
)

// startHAProxy runs haproxy in TCP mode in front of the node's wire port,
// sending PROXY v2 headers, and returns its address.
func startHAProxy(t *testing.T, backend string) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("TDB_REQUIRE_ALL") == "" {
			t.Skipf("haproxy not installed, skipping (TDB_REQUIRE_ALL=1 makes this a failure): %v", err)
		}
		t.Fatalf("haproxy not installed (TDB_REQUIRE_ALL is set): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend wire
  bind %s
  default_backend tdb
backend tdb
  server n1 %s send-proxy-v2
`, addr, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", path, "-db")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "haproxy to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr
}

// connectFrom connects to addr with the given loopback source address.
func connectFrom(ctx context.Context, connString, addr, source string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 10 * time.Second}
	cfg.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// TestProxyProtocolHAProxy: behind haproxy with send-proxy-v2 the proxy sees
// the real client IP, in the query log and in bans; PROXY headers are taken
// only from the trusted load balancer, and required from it.
func TestProxyProtocolHAProxy(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) {
		c.ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	lb := startHAProxy(t, e.Node.BoundWireAddr())
	ctx := context.Background()
	good := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")
	bad := e.ConnString("tdb_0000000000000000", "controlplane_workspace", "disable")

	// Through haproxy from 127.0.0.2: the log shows 127.0.0.2.
	c, err := connectFrom(ctx, good, lb, "127.0.0.2")
	if err != nil {
		t.Fatalf("connect through haproxy: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SELECT 'through haproxy'"); err != nil {
		t.Fatal(err)
	}
	loggedFrom(t, e, "SELECT 'through haproxy'", "127.0.0.2")

	// A direct TLS client (sslnegotiation=direct) through haproxy: its
	// ClientHello follows the header.
	dc, err := connectFrom(ctx, e.ConnString(e.ProxyPassword, "controlplane_workspace", "require")+"&sslnegotiation=direct", lb, "127.0.0.2")
	if err != nil {
		t.Fatalf("direct TLS through haproxy: %v", err)
	}
	mustSelectOne(t, dc)
	dc.Close(ctx)

	// The trusted load balancer's address without a header: refused.
	_, err = connectFrom(ctx, good, e.Node.BoundWireAddr(), "127.0.0.1")
	if pe := pgErr(t, err); pe.Code != "08P01" {
		t.Fatalf("trusted peer without a header: %s %q", pe.Code, pe.Message)
	}
	// Anyone else connects directly, without a header...
	direct, err := connectFrom(ctx, good, e.Node.BoundWireAddr(), "127.0.0.3")
	if err != nil {
		t.Fatalf("direct client: %v", err)
	}
	direct.Close(ctx)
	// ...and may not send one (it could claim any address).
	conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).Dial("tcp", e.Node.BoundWireAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 1234}, conn.RemoteAddr())
	if _, err := h.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": e.ProjectID, "database": "controlplane_workspace"}})
	_ = fe.Flush()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := fe.Receive()
	if er, ok := msg.(*pgproto3.ErrorResponse); !ok || er.Code != "08P01" || er.Message != "PROXY protocol header not accepted from 127.0.0.3" {
		t.Fatalf("untrusted PROXY header: got %#v, %v", msg, err)
	}

	// Bans fall on the real client, not on the load balancer.
	setCluster(t, e, map[string]int64{"auth_fail_threshold": 2})
	for i := 0; i < 2; i++ {
		_, err := connectFrom(ctx, bad, lb, "127.0.0.2")
		if pe := pgErr(t, err); pe.Code != "28P01" {
			t.Fatalf("bad password: %s %q", pe.Code, pe.Message)
		}
	}
	waitBanned(t, e, "127.0.0.2")
	_, err = connectFrom(ctx, good, lb, "127.0.0.2")
	pe := pgErr(t, err)
	if pe.Code != "53300" || !banText.MatchString(pe.Message) {
		t.Fatalf("banned client through haproxy: %s %q", pe.Code, pe.Message)
	}
	other, err := connectFrom(ctx, good, lb, "127.0.0.4")
	if err != nil {
		t.Fatalf("another client through the same haproxy: %v", err)
	}
	other.Close(ctx)
}

// loggedFrom checks that the query log holds stmt, and as run from client
// IP ip wherever it does.
func loggedFrom(t *testing.T, e *testnode.Env, stmt, ip string) {
	t.Helper()
	var out struct {
		Entries []querylog.Entry `json:"entries"`
	}
	e.MustDo(t, "GET", "/v1/logs", e.ProxyPassword, "", nil, &out)
	found := false
	for _, en := range out.Entries {
		if en.Statement == stmt {
			found = true
			if en.ClientIP != ip {
				t.Fatalf("query log client_ip %q, want %s", en.ClientIP, ip)
			}
		}
	}
	if !found {
		t.Fatalf("statement not in the log: %+v", out.Entries)
	}
}
