package tls13

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"tdb/internal/testconn"
)

// benchServers are the two ways a server carries a TLS 1.3 session on:
// crypto/tls for the session's life, and this package after the handshake.
func benchPair(b *testing.B, own bool) (srv net.Conn, cli *tls.Conn) {
	srv, cli, _ = benchPairRaw(b, own)
	return srv, cli
}

// benchPairRaw also returns the client's TCP connection.
func benchPairRaw(b *testing.B, own bool) (srv net.Conn, cli *tls.Conn, raw net.Conn) {
	b.Helper()
	app, proxy := testconn.TCPPair(b)
	cert := testconn.SelfSigned(b)
	cli = tls.Client(app, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if own {
		var err error
		if srv, _, err = Server(context.Background(), proxy, cfg); err != nil {
			b.Fatal(err)
		}
	} else {
		tc := tls.Server(proxy, cfg)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		srv = tc
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return srv, cli, app
}

// BenchmarkEcho is one small message each way per operation (a query and
// its answer), the server's end reading and writing through the record
// layer under test.
func BenchmarkEcho(b *testing.B) {
	bothLayers(b, func(b *testing.B, own bool) {
		srv, cli := benchPair(b, own)
		go func() {
			buf := make([]byte, 1024)
			for {
				n, err := srv.Read(buf)
				if err != nil {
					return
				}
				if _, err := srv.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
		msg := make([]byte, 100)
		got := make([]byte, 100)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := cli.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(cli, got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStream is the server sending 64 KiB per operation (a large
// result), to a client that takes the bytes without decrypting them: the
// time is the server's sealing and writing.
func BenchmarkStream(b *testing.B) {
	bothLayers(b, func(b *testing.B, own bool) {
		srv, _, raw := benchPairRaw(b, own)
		chunk := make([]byte, 64<<10)
		go func() { _, _ = io.Copy(io.Discard, raw) }()
		b.SetBytes(int64(len(chunk)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := srv.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// bothLayers runs bench as sub-benchmarks for crypto/tls and for this
// package's records.
func bothLayers(b *testing.B, bench func(b *testing.B, own bool)) {
	b.Run("crypto-tls", func(b *testing.B) { bench(b, false) })
	b.Run("tls13", func(b *testing.B) { bench(b, true) })
}
