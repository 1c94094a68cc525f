package tls13

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"tdb/internal/testconn"
)

// TestOpenSSLClients runs OpenSSL's client (the TLS library of libpq,
// psycopg, ruby-pg) with each TLS 1.3 suite in turn: every one goes on with
// this package's records.
func TestOpenSSLClients(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("TDB_REQUIRE_ALL") == "" {
			t.Skipf("openssl not installed, skipping (TDB_REQUIRE_ALL=1 makes this a failure): %v", err)
		}
		t.Fatalf("openssl not installed (TDB_REQUIRE_ALL is set): %v", err)
	}
	cert := testconn.SelfSigned(t)
	for _, tc := range []struct {
		suite string
		id    uint16
		own   bool
	}{
		{"TLS_AES_128_GCM_SHA256", tls.TLS_AES_128_GCM_SHA256, true},
		{"TLS_AES_256_GCM_SHA384", tls.TLS_AES_256_GCM_SHA384, true},
		{"TLS_CHACHA20_POLY1305_SHA256", tls.TLS_CHACHA20_POLY1305_SHA256, true},
	} {
		t.Run(tc.suite, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				conn  net.Conn
				state tls.ConnectionState
				got   []byte
				err   error
			}
			done := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				srv, state, err := Server(context.Background(), c, &tls.Config{Certificates: []tls.Certificate{cert}})
				if err != nil {
					c.Close()
					done <- result{err: err}
					return
				}
				got := make([]byte, 6)
				_, err = io.ReadFull(srv, got)
				if err == nil {
					_, err = srv.Write(bytes.Repeat([]byte("pong."), 10000))
				}
				srv.Close()
				done <- result{conn: srv, state: state, got: got, err: err}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", ln.Addr().String(), "-quiet",
				"-tls1_3", "-ciphersuites", tc.suite)
			cmd.Stdin = bytes.NewReader([]byte("ping.\n"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			r := <-done
			if r.err != nil {
				t.Fatalf("server: %v; openssl: %v %s", r.err, err, stderr.Bytes())
			}
			if r.state.CipherSuite != tc.id {
				t.Fatalf("suite %#x", r.state.CipherSuite)
			}
			if _, own := r.conn.(*Conn); own != tc.own {
				t.Fatalf("went on as a %T", r.conn)
			}
			if string(r.got) != "ping.\n" {
				t.Fatalf("server read %q", r.got)
			}
			if !bytes.Equal(out, bytes.Repeat([]byte("pong."), 10000)) {
				t.Fatalf("openssl read %d bytes (%v): %.100q; stderr %s", len(out), err, out, stderr.Bytes())
			}
		})
	}
}
