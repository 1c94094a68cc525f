package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"tdb/internal/testconn"
	"tdb/wire/tls13"
)

// directResult is what the server side of a direct TLS test learned.
type directResult struct {
	res   *StartupResult
	err   error
	query string // the Query read through res.Conn after a StartupMessage
}

// TestStartupDirectTLS: a client of sslnegotiation=direct opens with its
// TLS ClientHello. With ALPN "postgresql" the startup phase goes on inside
// TLS as after SSLRequest; without it the client is refused as PostgreSQL
// 17 refuses it; without TLS configured it gets a TLS alert, not a hang.
func TestStartupDirectTLS(t *testing.T) {
	cert, err := LoadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const noALPN = "received direct SSL connection request without ALPN protocol negotiation extension"
	user := []string{"user", "tdb_2abf90d3", "database", "myapp__wayne"}
	tests := []struct {
		name          string
		noTLS         bool     // the server has no TLS configuration
		alpn          []string // the client's ALPN protocols
		maxVersion    uint16
		send          []byte // what the client sends inside TLS
		wantRecords   string
		wantCancel    *CancelKey
		wantCode      string // the server's FATAL error, sent to the client inside TLS
		wantMsg       string
		wantClientErr string // substring of the client's handshake error
	}{
		{name: "tls 1.3 startup", alpn: []string{"postgresql"},
			send: append(startupMessage(protocolV3, user...), AppendQuery(nil, "SELECT 1")...), wantRecords: "tls13"},
		{name: "tls 1.2 startup", alpn: []string{"postgresql"}, maxVersion: tls.VersionTLS12,
			send: append(startupMessage(protocolV3, user...), AppendQuery(nil, "SELECT 1")...), wantRecords: "crypto_tls"},
		{name: "cancel", alpn: []string{"postgresql"}, send: cancelRequest(42, 0xdeadbeef),
			wantCancel: &CancelKey{ProcessID: 42, SecretKey: 0xdeadbeef}},
		{name: "no alpn", send: startupMessage(protocolV3, user...),
			wantCode: CodeProtocolViolation, wantMsg: noALPN},
		{name: "ssl request inside", alpn: []string{"postgresql"}, send: sslRequest(),
			wantCode: CodeProtocolViolation, wantMsg: "unexpected SSLRequest"},
		{name: "gssenc request inside", alpn: []string{"postgresql"}, send: gssEncRequest(),
			wantCode: CodeProtocolViolation, wantMsg: "unexpected GSSENCRequest"},
		{name: "other alpn", alpn: []string{"http/1.1"}, wantClientErr: "no application protocol"},
		{name: "no tls configured", noTLS: true, alpn: []string{"postgresql"}, wantClientErr: "handshake failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := testconn.TCPPair(t)
			// A broken server must fail the test, not hang it.
			_ = client.SetDeadline(time.Now().Add(10 * time.Second))
			cfg := StartupConfig{RequireTLS: true}
			if !tt.noTLS {
				cfg.TLS = ServerTLSConfig(cert)
			}
			done := make(chan directResult, 1)
			go func() {
				defer server.Close()
				res, err := Startup(context.Background(), server, cfg)
				out := directResult{res: res, err: err}
				switch {
				case err != nil:
					if _, ok := AsPGError(err); ok {
						_ = WriteError(res.Conn, err)
					}
				case res.Params != nil:
					_ = res.Conn.SetDeadline(time.Now().Add(10 * time.Second))
					if _, body, err := NewFrameReader(res.Conn, 0).Next(); err == nil {
						q, _ := QueryText(body)
						out.query = string(q)
					}
					_, _ = res.Conn.Write(AppendReadyForQuery(nil, 'I'))
				}
				if res != nil && res.Conn != nil {
					res.Conn.Close()
				}
				done <- out
			}()

			tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true, NextProtos: tt.alpn, MaxVersion: tt.maxVersion})
			herr := tc.Handshake()
			if tt.wantClientErr != "" {
				if herr == nil || !strings.Contains(herr.Error(), tt.wantClientErr) {
					t.Fatalf("client handshake error = %v, want %q", herr, tt.wantClientErr)
				}
				if r := <-done; r.err == nil || isPGError(r.err) {
					t.Fatalf("server error = %v, want one that only closes", r.err)
				}
				return
			}
			if herr != nil {
				t.Fatalf("client handshake: %v", herr)
			}
			if _, err := tc.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(tc)
			r := <-done

			if tt.wantCode != "" {
				pe, ok := AsPGError(r.err)
				if !ok || pe.Code != tt.wantCode || pe.Severity != SeverityFatal || pe.Message != tt.wantMsg {
					t.Fatalf("server error = %v, want FATAL %s %q", r.err, tt.wantCode, tt.wantMsg)
				}
				if len(got) == 0 || got[0] != 'E' || !bytes.Contains(got, []byte(tt.wantMsg)) {
					t.Fatalf("client got %q, want the ErrorResponse inside TLS", got)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			res := r.res
			if res.TLS == nil || res.TLS.NegotiatedProtocol != "postgresql" || res.ChannelBinding == nil {
				t.Fatalf("result = %+v, want TLS with ALPN postgresql and channel binding", res)
			}
			if tt.wantCancel != nil {
				if res.Cancel == nil || *res.Cancel != *tt.wantCancel {
					t.Fatalf("cancel = %+v, want %+v", res.Cancel, tt.wantCancel)
				}
				return
			}
			if res.TLSRecords != tt.wantRecords {
				t.Fatalf("records = %q, want %q", res.TLSRecords, tt.wantRecords)
			}
			// The session reads the socket itself, as after SSLRequest, so
			// that the event loop can take it: nothing of the bytes read
			// before the handshake stays in between.
			if under := underlying(res.Conn); under != server {
				t.Fatalf("session reads %T, not the socket", under)
			}
			if res.User() != "tdb_2abf90d3" || res.Database() != "myapp__wayne" {
				t.Fatalf("params = %v", res.Params)
			}
			if r.query != "SELECT 1" || !bytes.Equal(got, AppendReadyForQuery(nil, 'I')) {
				t.Fatalf("server read query %q, client got %q", r.query, got)
			}
		})
	}
}

// underlying is the connection a TLS session reads its records from, as
// the event loop finds it (evloop.EndpointOf).
func underlying(c net.Conn) net.Conn {
	if bc, ok := c.(*bufferedConn); ok { // the client pipelined its Query
		c = bc.Conn
	}
	switch c := c.(type) {
	case *tls13.Conn:
		return c.NetConn()
	case *tls.Conn:
		nc := c.NetConn()
		if r, ok := nc.(interface{ NetConn() net.Conn }); ok {
			return r.NetConn()
		}
		return nc
	}
	return c
}
