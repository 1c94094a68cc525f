package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/errors"
)

// startupRun runs Startup on one end of a pipe while the other end writes
// each chunk in order, then it returns the result, the error and everything
// the server wrote (its answers and the error it sends).
func startupRun(t *testing.T, cfg StartupConfig, chunks ...[]byte) (*StartupResult, error, []byte) {
	t.Helper()
	server, client := net.Pipe()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	go func() {
		for _, c := range chunks {
			if _, err := client.Write(c); err != nil {
				return
			}
		}
	}()
	res, err := Startup(context.Background(), server, cfg)
	if err != nil {
		if _, ok := AsPGError(err); ok {
			_ = WriteError(res.Conn, err)
		}
	}
	server.Close()
	select {
	case b := <-got:
		return res, err, b
	case <-time.After(5 * time.Second):
		t.Fatal("client reader did not finish")
		return nil, nil, nil
	}
}

func TestStartup(t *testing.T) {
	v3 := uint32(protocolV3)
	user := []string{"user", "tdb_2abf90d3", "database", "myapp__wayne"}
	tests := []struct {
		name       string
		cfg        StartupConfig
		chunks     [][]byte
		wantCode   string // "" for success
		wantMsg    string // substring of the error message
		wantOut    string // what the server wrote first, before any error
		wantParams map[string]string
		wantCancel *CancelKey
	}{
		{name: "startup", chunks: [][]byte{startupMessage(v3, append(user, "application_name", "psql")...)},
			wantParams: map[string]string{"user": "tdb_2abf90d3", "database": "myapp__wayne", "application_name": "psql"}},
		{name: "database defaults to user", chunks: [][]byte{startupMessage(v3, "user", "u1")},
			wantParams: map[string]string{"user": "u1", "database": "u1"}},
		{name: "ssl declined then startup", chunks: [][]byte{sslRequest(), startupMessage(v3, user...)},
			wantOut: "N", wantParams: map[string]string{"user": "tdb_2abf90d3", "database": "myapp__wayne"}},
		{name: "gssenc declined then startup", chunks: [][]byte{gssEncRequest(), startupMessage(v3, user...)},
			wantOut: "N", wantParams: map[string]string{"user": "tdb_2abf90d3", "database": "myapp__wayne"}},
		{name: "gssenc then ssl then startup", chunks: [][]byte{gssEncRequest(), sslRequest(), startupMessage(v3, user...)},
			wantOut: "NN", wantParams: map[string]string{"user": "tdb_2abf90d3", "database": "myapp__wayne"}},
		{name: "cancel", chunks: [][]byte{cancelRequest(42, 0xdeadbeef)}, wantCancel: &CancelKey{ProcessID: 42, SecretKey: 0xdeadbeef}},
		{name: "pipelined after ssl request", chunks: [][]byte{append(sslRequest(), startupMessage(v3, user...)...)},
			wantCode: CodeProtocolViolation, wantMsg: "received unencrypted data after SSL request"},
		{name: "pipelined after gssenc request", chunks: [][]byte{append(gssEncRequest(), startupMessage(v3, user...)...)},
			wantCode: CodeProtocolViolation, wantMsg: "received unencrypted data after GSSAPI"},
		{name: "second ssl request", chunks: [][]byte{sslRequest(), sslRequest()},
			wantOut: "N", wantCode: CodeProtocolViolation, wantMsg: "unexpected SSLRequest"},
		{name: "protocol 2", chunks: [][]byte{startupMessage(2<<16, user...)},
			wantCode: CodeProtocolViolation, wantMsg: "unsupported frontend protocol 2.0"},
		{name: "unknown code", chunks: [][]byte{packet(1234<<16|5681, nil)},
			wantCode: CodeProtocolViolation, wantMsg: "unsupported frontend protocol 1234.5681"},
		{name: "oversize", chunks: [][]byte{startupMessage(v3, "user", strings.Repeat("x", DefaultMaxPacket))},
			wantCode: CodeProtocolViolation, wantMsg: "invalid length of startup packet"},
		{name: "custom max packet", cfg: StartupConfig{MaxPacket: 16}, chunks: [][]byte{startupMessage(v3, user...)},
			wantCode: CodeProtocolViolation, wantMsg: "invalid length of startup packet"},
		{name: "short", chunks: [][]byte{{0, 0, 0, 4}},
			wantCode: CodeProtocolViolation, wantMsg: "invalid length of startup packet: 4"},
		{name: "negative length", chunks: [][]byte{{0xff, 0xff, 0xff, 0xff}},
			wantCode: CodeProtocolViolation, wantMsg: "invalid length of startup packet"},
		{name: "bad cancel length", chunks: [][]byte{packet(cancelRequestCode, []byte{1, 2, 3, 4})},
			wantCode: CodeProtocolViolation, wantMsg: "cancel request"},
		{name: "missing user", chunks: [][]byte{startupMessage(v3, "database", "d")},
			wantCode: CodeInvalidAuthorization, wantMsg: "no PostgreSQL user name specified"},
		{name: "no terminator", chunks: [][]byte{packet(v3, []byte("user\x00u\x00"))},
			wantCode: CodeProtocolViolation, wantMsg: "invalid startup packet layout"},
		{name: "value without terminator", chunks: [][]byte{packet(v3, []byte("user\x00u"))},
			wantCode: CodeProtocolViolation, wantMsg: "invalid startup packet layout"},
		{name: "tls required", cfg: StartupConfig{RequireTLS: true}, chunks: [][]byte{startupMessage(v3, user...)},
			wantCode: CodeInvalidAuthorization, wantMsg: "TLS required"},
		{name: "tls required after ssl declined", cfg: StartupConfig{RequireTLS: true}, chunks: [][]byte{sslRequest(), startupMessage(v3, user...)},
			wantOut: "N", wantCode: CodeInvalidAuthorization, wantMsg: "TLS required"},
		{name: "plaintext allowed", cfg: StartupConfig{RequireTLS: true, AllowPlaintext: func(net.Addr) bool { return true }},
			chunks: [][]byte{startupMessage(v3, user...)}, wantParams: map[string]string{"user": "tdb_2abf90d3", "database": "myapp__wayne"}},
		{name: "protocol 3.2 negotiated down", chunks: [][]byte{startupMessage(v3|2, "user", "u", "_pq_.x", "1")},
			wantOut: "v\x00\x00\x00\x13\x00\x00\x00\x00\x00\x00\x00\x01_pq_.x\x00", wantParams: map[string]string{"user": "u", "database": "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err, out := startupRun(t, tt.cfg, tt.chunks...)
			if !strings.HasPrefix(string(out), tt.wantOut) {
				t.Fatalf("server wrote %q, want prefix %q", out, tt.wantOut)
			}
			if tt.wantCode != "" {
				if err == nil {
					t.Fatalf("no error, want %s", tt.wantCode)
				}
				pe, ok := AsPGError(err)
				if !ok || pe.Code != tt.wantCode || pe.Severity != SeverityFatal || !strings.Contains(pe.Message, tt.wantMsg) {
					t.Fatalf("error = %v, want FATAL %s containing %q", err, tt.wantCode, tt.wantMsg)
				}
				// The client got the error right after the expected answers.
				rest := out[len(tt.wantOut):]
				if len(rest) == 0 || rest[0] != 'E' || !bytes.Contains(rest, []byte(tt.wantMsg)) {
					t.Fatalf("client got %q after the answers, want an ErrorResponse", rest)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantCancel != nil {
				if res.Cancel == nil || *res.Cancel != *tt.wantCancel || len(out) != 0 {
					t.Fatalf("cancel = %+v, wrote %q; want %+v", res.Cancel, out, tt.wantCancel)
				}
				return
			}
			if len(res.Params) != len(tt.wantParams) {
				t.Fatalf("params = %v, want %v", res.Params, tt.wantParams)
			}
			for k, v := range tt.wantParams {
				if res.Params[k] != v {
					t.Fatalf("params = %v, want %v", res.Params, tt.wantParams)
				}
			}
			if res.Backend == nil || res.TLS != nil || res.ChannelBinding != nil {
				t.Fatalf("result = %+v", res)
			}
		})
	}
}

func TestStartupSilentClient(t *testing.T) {
	tests := []struct {
		name   string
		chunks [][]byte
	}{
		{name: "nothing", chunks: nil},
		{name: "partial length", chunks: [][]byte{{0, 0}}},
		{name: "partial packet", chunks: [][]byte{startupMessage(protocolV3, "user", "u")[:10]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err, out := startupRun(t, StartupConfig{Timeout: 50 * time.Millisecond}, tt.chunks...)
			if err == nil || len(out) != 0 {
				t.Fatalf("err = %v, wrote %q", err, out)
			}
			if _, ok := AsPGError(err); ok {
				t.Fatalf("a timeout is not for the client: %v", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("err = %v, want a timeout", err)
			}
			if time.Since(start) > 3*time.Second {
				t.Fatal("deadline not applied")
			}
		})
	}
}

func TestStartupContextCancel(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err := Startup(ctx, server, StartupConfig{Timeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// Bytes pipelined after the StartupMessage are not lost: they are read
// through res.Conn, e.g. by a FrameReader.
func TestStartupPipelinedAfterStartupMessage(t *testing.T) {
	query := AppendQuery(nil, "SELECT 1")
	server, client := net.Pipe()
	defer client.Close()
	go func() {
		_, _ = client.Write(append(startupMessage(protocolV3, "user", "u"), query...))
	}()
	res, err := Startup(context.Background(), server, StartupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	typ, body, err := NewFrameReader(res.Conn, 0).Next()
	if err != nil {
		t.Fatal(err)
	}
	if sql, _ := QueryText(body); typ != MsgQuery || string(sql) != "SELECT 1" {
		t.Fatalf("got %c %q", typ, body)
	}
}

func FuzzStartup(f *testing.F) {
	f.Add(startupMessage(protocolV3, "user", "u", "database", "d"), uint8(0))
	f.Add(append(sslRequest(), startupMessage(protocolV3, "user", "u")...), uint8(8))
	f.Add(append(gssEncRequest(), startupMessage(protocolV3|2, "user", "u", "_pq_.a", "b")...), uint8(8))
	f.Add(cancelRequest(1, 2), uint8(0))
	f.Add([]byte{0, 0, 0, 8, 0, 2, 0, 0}, uint8(3))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0}, uint8(2)) // a direct TLS ClientHello's first bytes
	f.Add(append(startupMessage(protocolV3, "user", "u"), AppendQuery(nil, "SELECT 1")...), uint8(5))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		conn := &fakeConn{in: in, chunk: int(chunk)}
		res, err := Startup(context.Background(), conn, StartupConfig{})
		if res == nil || res.Conn == nil {
			t.Fatal("nil result or connection")
		}
		if err != nil {
			return
		}
		if (res.Cancel == nil) == (res.Params == nil) {
			t.Fatalf("result %+v has both or neither of Cancel and Params", res)
		}
		if res.Params != nil && (res.User() == "" || res.Database() == "" || res.Backend == nil) {
			t.Fatalf("result %+v lacks user, database or backend", res)
		}
		if res.Params == nil {
			return
		}
		// The connection goes on exactly after the StartupMessage: the
		// bytes a client pipelined behind it all reach the session.
		consumed := 0
		for {
			n := int(binary.BigEndian.Uint32(in[consumed:]))
			code := binary.BigEndian.Uint32(in[consumed+4:])
			consumed += n
			if code != sslRequestCode && code != gssEncRequestCode {
				break
			}
		}
		var rest []byte
		buf := make([]byte, 100)
		for {
			n, err := res.Conn.Read(buf)
			rest = append(rest, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.Equal(rest, in[consumed:]) {
			t.Fatalf("after the startup packet the session reads %q, the client sent %q", rest, in[consumed:])
		}
	})
}

// recordConn records what is written to it and reads nothing.
type recordConn struct {
	fakeConn
	out []byte
}

func (c *recordConn) Write(p []byte) (int, error) { c.out = append(c.out, p...); return len(p), nil }

// clientHello returns the first flight of a TLS client, with ALPN protos.
func clientHello(f *testing.F, maxVersion uint16, protos ...string) []byte {
	c := &recordConn{}
	_ = tls.Client(c, &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion, NextProtos: protos}).Handshake()
	if len(c.out) == 0 {
		f.Fatal("no ClientHello written")
	}
	return c.out
}

// FuzzStartupTLS is FuzzStartup with TLS configured: a ClientHello (direct
// TLS) or an SSLRequest leads into the TLS handshake, whose record reader
// hands crypto/tls the bytes read before it and then the connection's.
// Whatever the client sends, Startup returns (the input ends), with a
// connection to write an error to, and never succeeds without the TLS it
// requires.
func FuzzStartupTLS(f *testing.F) {
	cert, err := LoadOrCreateCert(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	cfg := StartupConfig{TLS: ServerTLSConfig(cert), RequireTLS: true}
	f.Add(clientHello(f, 0, "postgresql"), uint8(0))
	f.Add(clientHello(f, tls.VersionTLS12, "postgresql"), uint8(7))
	f.Add(clientHello(f, 0), uint8(0))
	f.Add(append(sslRequest(), clientHello(f, 0)...), uint8(0))
	f.Add(sslRequest(), uint8(0))
	f.Add(startupMessage(protocolV3, "user", "u"), uint8(0))
	f.Add([]byte{0x16, 3, 1, 0xff, 0xff, 1}, uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		conn := &fakeConn{in: in, chunk: int(chunk)}
		res, err := Startup(context.Background(), conn, cfg)
		if res == nil || res.Conn == nil {
			t.Fatal("nil result or connection")
		}
		if err != nil {
			return
		}
		if res.Params != nil && res.TLS == nil {
			t.Fatalf("startup without the TLS required: %+v", res)
		}
		if (res.Cancel == nil) == (res.Params == nil) {
			t.Fatalf("result %+v has both or neither of Cancel and Params", res)
		}
	})
}
