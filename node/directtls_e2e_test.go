package node_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pires/go-proxyproto"

	"tdb/internal/testnode"
	"tdb/node"
)

// directDialer dials the node's wire port from a loopback source address,
// optionally writes a PROXY v2 header naming a client first, and records the
// first byte each connection sends: 0x16, a TLS handshake record, for a
// direct TLS connection; 0 for an SSLRequest's length.
type directDialer struct {
	wire, source string
	proxyFrom    string // the client a PROXY header names; "" sends none

	mu    sync.Mutex
	first []byte
}

func (d *directDialer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(d.source)}, Timeout: 10 * time.Second}
	c, err := nd.DialContext(ctx, network, d.wire)
	if err != nil {
		return nil, err
	}
	if d.proxyFrom != "" {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(d.proxyFrom), Port: 1234}, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &firstByteConn{Conn: c, d: d}, nil
}

// firsts returns the first bytes recorded so far.
func (d *directDialer) firsts() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.first...)
}

type firstByteConn struct {
	net.Conn
	d    *directDialer
	once sync.Once
}

func (c *firstByteConn) Write(b []byte) (int, error) {
	if len(b) > 0 {
		c.once.Do(func() {
			c.d.mu.Lock()
			c.d.first = append(c.d.first, b[0])
			c.d.mu.Unlock()
		})
	}
	return c.Conn.Write(b)
}

// connectDirect connects with sslnegotiation=direct through d.
func connectDirect(t *testing.T, connString string, d *directDialer, maxVersion uint16) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString + "&sslnegotiation=direct")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = d.dial
	cfg.TLSConfig.MaxVersion = maxVersion
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect with sslnegotiation=direct: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// cancelSleep runs pg_sleep(60) on c and sends CancelRequests (each on a
// connection of its own, direct TLS like c's) until the statement ends: it
// must end with 57014.
func cancelSleep(t *testing.T, c *pgx.Conn) {
	t.Helper()
	cancelSleepWith(t, c, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.PgConn().CancelRequest(ctx)
		cancel()
		if err != nil {
			t.Fatalf("cancel request: %v", err)
		}
	})
}

// cancelSleepWith runs pg_sleep(60) on c and calls send every 200 ms
// until the statement ends (the first cancel may arrive before it
// started): it must end with 57014.
func cancelSleepWith(t *testing.T, c *pgx.Conn, send func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(60)")
		errc <- err
	}()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			if pe := pgErr(t, err); pe.Code != "57014" {
				t.Fatalf("pg_sleep ended with %s %s, want 57014", pe.Code, pe.Message)
			}
			return
		case <-tick.C:
			send()
		case <-deadline:
			t.Fatal("the statement was never cancelled")
		}
	}
}

// TestDirectTLS: PostgreSQL 17's sslnegotiation=direct (a TLS ClientHello
// first, no SSLRequest) logs in, runs queries and cancels them; the session
// is relayed by the event loop on tdb's own TLS 1.3 records (or crypto/tls
// for TLS 1.2) as after SSLRequest.
func TestDirectTLS(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	url := e.ConnString(e.ProxyPassword, "controlplane_workspace", "require")
	wire := e.Node.BoundWireAddr()

	d := &directDialer{wire: wire, source: "127.0.0.1"}
	c := connectDirect(t, url, d, 0)
	mustSelectOne(t, c)
	if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("client connection is %T, want TLS", c.PgConn().Conn())
	}
	if got := relayCount(t, e, "loop"); got != 1 {
		t.Fatalf("sessions relayed by the loop: %d, want 1", got)
	}
	if got := tlsCount(t, e, "tls13"); got != 1 {
		t.Fatalf("TLS sessions on tdb's own records: %d, want 1", got)
	}
	cancelSleep(t, c)
	mustSelectOne(t, c)
	firsts := d.firsts()
	if len(firsts) < 2 {
		t.Fatalf("%d connections dialled, want the session's and a cancel's", len(firsts))
	}
	for i, b := range firsts {
		if b != 0x16 {
			t.Fatalf("connection %d began with %#x, not a TLS handshake record", i, b)
		}
	}

	// TLS 1.2 stays with crypto/tls, in the loop too.
	c12 := connectDirect(t, url, &directDialer{wire: wire, source: "127.0.0.1"}, tls.VersionTLS12)
	mustSelectOne(t, c12)
	if got := tlsCount(t, e, "crypto_tls"); got != 1 {
		t.Fatalf("TLS 1.2 sessions: %d, want 1", got)
	}
	if got := relayCount(t, e, "loop"); got != 2 {
		t.Fatalf("sessions relayed by the loop: %d, want 2", got)
	}
	cancelSleep(t, c12)
	mustSelectOne(t, c12)
}

// TestDirectTLSProxyProtocol: from a trusted load balancer, a PROXY header
// then a TLS ClientHello: the session works, cancels included, and is
// logged under the client the header names.
func TestDirectTLSProxyProtocol(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) {
		c.ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	url := e.ConnString(e.ProxyPassword, "controlplane_workspace", "require")
	lb := &directDialer{wire: e.Node.BoundWireAddr(), source: "127.0.0.1", proxyFrom: "10.9.9.9"}
	c := connectDirect(t, url, lb, 0)
	if _, err := c.Exec(context.Background(), "SELECT 'direct behind a proxy header'"); err != nil {
		t.Fatal(err)
	}
	cancelSleep(t, c)
	mustSelectOne(t, c)
	if f := lb.firsts(); len(f) < 2 || f[0] != 0x16 || f[1] != 0x16 {
		t.Fatalf("connections through the load balancer began with %#x", f)
	}
	loggedFrom(t, e, "SELECT 'direct behind a proxy header'", "10.9.9.9")
}
