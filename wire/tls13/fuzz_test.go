package tls13

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// streamConn reads a fixed stream and takes every write.
type streamConn struct {
	r io.Reader
	w bytes.Buffer
}

func (c *streamConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *streamConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzRecords hands the server, after its handshake, what a client could
// send: the input's first byte picks raw bytes or records sealed under the
// client's keys (whose inner plaintext, content type and padding included,
// is the rest of the input). Reading ends with the end of the stream or an
// error of this package, never a panic, and an error of the server's stops
// its writing too.
func FuzzRecords(f *testing.F) {
	f.Add([]byte("\x01select 1\x17"))
	f.Add([]byte("\x01\x18\x00\x00\x01\x01\x16"))
	f.Add([]byte("\x01\x00\x00"))
	f.Add([]byte("\x01\x01\x00\x15"))
	f.Add([]byte("\x00\x17\x03\x03\x00\x05hello"))
	f.Add([]byte("\x02" + strings.Repeat("x", 300) + "\x17\x00\x00"))
	secret := bytes.Repeat([]byte{7}, 32)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		client, err := newConn(&streamConn{r: bytes.NewReader(nil)}, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, nil, secret)
		if err != nil {
			t.Fatal(err)
		}
		var stream []byte
		switch in[0] % 3 {
		case 0:
			stream = in[1:]
		case 1:
			stream = sealRaw(client, in[1:])
		default: // the same inner plaintext in records of up to 100 bytes
			for rest := in[1:]; len(rest) > 0; {
				n := min(len(rest), 100)
				stream = append(stream, sealRaw(client, rest[:n])...)
				rest = rest[n:]
			}
		}
		sc := &streamConn{r: bytes.NewReader(stream)}
		srv, err := newConn(sc, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, secret, secret)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1000)
		for {
			_, err := srv.Read(buf)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "tls13: ") {
					t.Fatalf("error %q", err)
				}
				// Any error but the peer's own alert was fatal here, and
				// told the peer: writing has ended.
				if !strings.Contains(err.Error(), "remote error") && srv.werr == nil {
					t.Fatalf("writing goes on after %q", err)
				}
				return
			}
		}
	})
}
