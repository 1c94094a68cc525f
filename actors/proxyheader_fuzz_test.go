package actors

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// streamConn reads a fixed stream and reports peer as its remote address.
type streamConn struct {
	r    io.Reader
	peer net.Addr
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return len(b), nil }
func (c *streamConn) Close() error                { return nil }
func (c *streamConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432}
}
func (c *streamConn) RemoteAddr() net.Addr             { return c.peer }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzProxyHeader hands readProxyHeader what a peer could send first. From a
// trusted balancer, an accepted header is consumed and nothing after it, and
// the client IP is the header's source (the balancer's own for a LOCAL
// header); from any other peer, what is accepted reaches the session
// untouched and the client IP is the peer's.
func FuzzProxyHeader(f *testing.F) {
	startup := []byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}
	v2 := func(cmd, fam byte, payload []byte) []byte {
		b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), cmd, fam, byte(len(payload)>>8), byte(len(payload)))
		return append(b, payload...)
	}
	f.Add(append([]byte("PROXY TCP4 192.0.2.1 198.51.100.1 5123 5432\r\n"), startup...), true)
	f.Add(append([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 5123 5432\r\n"), startup...), true)
	f.Add([]byte("PROXY UNKNOWN\r\n"), true)
	f.Add(append(v2(0x21, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 1, 0x14, 0x03, 0x15, 0x38}), startup...), true)
	f.Add(v2(0x20, 0x00, nil), true)
	f.Add(v2(0x21, 0x31, make([]byte, 216)), true)
	f.Add(startup, false)
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.1 5123 5432\r\n"), false)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	balancer := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}
	other := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 40000}
	f.Fuzz(func(t *testing.T, in []byte, fromBalancer bool) {
		peer := net.Addr(other)
		if fromBalancer {
			peer = balancer
		}
		conn, err := readProxyHeader(&streamConn{r: bytes.NewReader(in), peer: peer}, trusted, time.Second)
		if err != nil {
			return
		}
		ip := clientIP(conn.RemoteAddr())
		rest, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("reading after the header: %v", err)
		}
		if !bytes.HasSuffix(in, rest) {
			t.Fatalf("read %q after the header of %q", rest, in)
		}
		if !fromBalancer {
			if !bytes.Equal(rest, in) || ip != "203.0.113.9" {
				t.Fatalf("peer without trust: read %q of %q, client %s", rest, in, ip)
			}
			return
		}
		h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("header accepted that proxyproto.Read refuses: %v", err)
		}
		want := clientIP(balancer)
		if h.Command.IsProxy() && h.SourceAddr != nil {
			want = clientIP(h.SourceAddr)
		}
		if ip != want {
			t.Fatalf("client %s, header %+v", ip, h)
		}
		if ip != "local" {
			if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("client IP %q is not a plain address", ip)
			}
		}
	})
}
