package evloop

import (
	"io"
	"net"
	"testing"
)

// BenchmarkRoundTrip measures one request and its reply through a relay
// between an application and a database on loopback TCP: the loop, and as
// the baseline in the same run a goroutine per direction (io.Copy), the
// minimal Go proxy. Compare the two ns/op.
//
// Here the application and the database are goroutines of the same process,
// and the loop loses (on 2 cores, 2026-11-26: about 85 us against 14 us):
// goroutines hand a message on to each other on the thread already running,
// while the loop is a thread of its own, so every hop wakes a thread
// (spinning before epoll_wait does not help, so it is not the loop's own
// wake-up). With clients and PostgreSQL as separate processes every hop
// wakes a thread anyway, and the loop saves the Go scheduler's extra one
// (bench/run.sh, pgbench -S -c 1: about +15 us per round trip against
// +105 us); the difference is what this benchmark is kept to watch.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("goroutines", func(b *testing.B) {
		benchRoundTrip(b, func(proxyClient, proxyBackend net.Conn) {
			go func() { _, _ = io.Copy(proxyBackend, proxyClient) }()
			go func() { _, _ = io.Copy(proxyClient, proxyBackend) }()
		})
	})
	b.Run("loop", func(b *testing.B) {
		if !Supported() {
			b.Skip("evloop: no epoll on this platform")
		}
		l, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		benchRoundTrip(b, func(proxyClient, proxyBackend net.Conn) {
			client, _ := EndpointOf(NewSocket(proxyClient))
			backend, _ := EndpointOf(NewSocket(proxyBackend))
			if _, err := l.Relay(client, backend, &forward{}, [2][]byte{}, func(Result) {}); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func benchRoundTrip(b *testing.B, relay func(proxyClient, proxyBackend net.Conn)) {
	app, proxyClient := tcpPair(b)
	proxyBackend, db := tcpPair(b)
	relay(proxyClient, proxyBackend)
	query := frame('Q', []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 1;\x00"))
	reply := frame('Z', []byte("I"))
	go func() { // the database: a reply per query
		buf := make([]byte, len(query))
		for {
			if _, err := io.ReadFull(db, buf); err != nil {
				return
			}
			if _, err := db.Write(reply); err != nil {
				return
			}
		}
	}()
	got := make([]byte, len(reply))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := app.Write(query); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(app, got); err != nil {
			b.Fatal(err)
		}
	}
}
