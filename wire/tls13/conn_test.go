package tls13

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"tdb/internal/testconn"
)

// handshake connects a crypto/tls client with ccfg to Server, and returns
// both ends and the client's TCP connection. The client goes over
// wrap(that connection) when wrap is not nil.
func handshake(t *testing.T, wrap func(net.Conn) net.Conn, ccfg *tls.Config) (srv net.Conn, state tls.ConnectionState, cli *tls.Conn, app net.Conn) {
	t.Helper()
	app, proxy := testconn.TCPPair(t)
	under := app
	if wrap != nil {
		under = wrap(app)
	}
	cli = tls.Client(under, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	srv, state, err := Server(context.Background(), proxy, &tls.Config{Certificates: []tls.Certificate{testconn.SelfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return srv, state, cli, app
}

// echo copies what srv reads back to it until the end of the stream, then
// closes it.
func echo(srv net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(srv, srv)
		srv.Close()
		done <- err
	}()
	return done
}

func TestServerCarriesOnWithItsOwnRecords(t *testing.T) {
	srv, state, cli, _ := handshake(t, nil, &tls.Config{InsecureSkipVerify: true})
	if _, ok := srv.(*Conn); !ok {
		t.Fatalf("a TLS 1.3 session (suite %#x) went on as a %T", state.CipherSuite, srv)
	}
	if state.Version != tls.VersionTLS13 || !state.HandshakeComplete {
		t.Fatalf("state %+v", state)
	}
	done := echo(srv)
	// Around the record size limit, and far over it.
	for _, n := range []int{1, 100, maxPlaintext - 1, maxPlaintext, maxPlaintext + 1, 3*maxPlaintext + 7, 1 << 20} {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		go func() { _, _ = cli.Write(msg) }()
		got := make([]byte, n)
		if _, err := io.ReadFull(cli, got); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes came back changed", n)
		}
	}
	// close_notify from the client is the end of the stream; the server's
	// answers with its own.
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("echo: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not see the end of the stream")
	}
}

func TestServerKeepsTheRecordSentWithTheFinished(t *testing.T) {
	// The client's Finished and its first data leave in one write: the
	// handshake must leave that record to the record layer.
	app, proxy := testconn.TCPPair(t)
	held := &holdConn{Conn: app}
	cli := tls.Client(held, &tls.Config{InsecureSkipVerify: true,
		VerifyConnection: func(tls.ConnectionState) error { held.hold(); return nil }})
	errc := make(chan error, 1)
	go func() {
		if err := cli.Handshake(); err != nil {
			errc <- err
			return
		}
		_, _ = cli.Write([]byte("startup"))
		errc <- held.release()
	}()
	srv, _, err := Server(context.Background(), proxy, &tls.Config{Certificates: []tls.Certificate{testconn.SelfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.(*Conn); !ok {
		t.Fatalf("went on as a %T", srv)
	}
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len("startup"))
	if _, err := io.ReadFull(srv, got); err != nil || string(got) != "startup" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// holdConn keeps what is written after hold until release.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	held *bytes.Buffer
}

func (h *holdConn) hold() {
	h.mu.Lock()
	h.held = new(bytes.Buffer)
	h.mu.Unlock()
}

func (h *holdConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil {
		return h.held.Write(b)
	}
	return h.Conn.Write(b)
}

func (h *holdConn) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.held.Bytes()
	h.held = nil
	_, err := h.Conn.Write(b)
	return err
}

func TestServerLeavesOtherSessionsToCryptoTLS(t *testing.T) {
	srv, state, cli, _ := handshake(t, nil, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	tc, ok := srv.(*tls.Conn)
	if !ok || state.Version != tls.VersionTLS12 {
		t.Fatalf("a TLS 1.2 session went on as a %T (version %#x)", srv, state.Version)
	}
	if _, ok := tc.NetConn().(interface{ NetConn() net.Conn }); !ok {
		t.Fatalf("the connection under crypto/tls is a %T", tc.NetConn())
	}
	echo(srv)
	go func() { _, _ = cli.Write([]byte("twelve")) }()
	got := make([]byte, 6)
	if _, err := io.ReadFull(cli, got); err != nil || string(got) != "twelve" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// peer is the client's end driven by this package's record layer, for what
// crypto/tls's client does not send: KeyUpdate, damaged records.
func peer(t *testing.T) (srv *Conn, cli *Conn, raw net.Conn) {
	t.Helper()
	keys := &keyLog{}
	// Read record by record, as the server does, so that crypto/tls holds
	// nothing past the server's Finished.
	readRecords := func(c net.Conn) net.Conn { return &recordReader{Conn: c} }
	s, state, _, app := handshake(t, readRecords, &tls.Config{InsecureSkipVerify: true, KeyLogWriter: keys})
	// The client's reading is the server's writing: the secrets swap.
	c, err := newConn(app, state.Version, state.CipherSuite, keys.server, keys.client)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*Conn), c, app
}

func TestKeyUpdateBothWays(t *testing.T) {
	srv, cli, _ := peer(t)
	done := echo(srv)
	roundTrip := func(what string) {
		t.Helper()
		if _, err := cli.Write([]byte(what)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(what))
		if _, err := io.ReadFull(cli, got); err != nil || string(got) != what {
			t.Fatalf("%s: %q, %v", what, got, err)
		}
	}
	roundTrip("before")
	for i := 0; i < 3; i++ {
		// update_requested: the server moves its reading keys, answers with
		// its own KeyUpdate and moves its writing keys.
		requestUpdate(t, cli)
		roundTrip("after an update")
	}
	if cli.in.seq == 0 || srv.out.seq == 0 {
		t.Fatal("no record after the updates")
	}
	cli.Close()
	if err := <-done; err != nil {
		t.Fatalf("echo: %v", err)
	}
}

func TestDamagedRecordsEndTheSession(t *testing.T) {
	cases := []struct {
		name   string
		record func(cli *Conn) []byte
		err    string
		alert  string
	}{
		{"a flipped bit", func(cli *Conn) []byte {
			rec := seal(cli, typeAppData, []byte("select 1"))
			rec[len(rec)-1] ^= 1
			return rec
		}, "failed authentication", "alert 20"},
		{"an oversized record", func(*Conn) []byte {
			return []byte{typeAppData, 3, 3, 0x50, 0}
		}, "over the", "alert 22"},
		{"a plaintext record", func(*Conn) []byte {
			return []byte{20, 3, 3, 0, 1, 1}
		}, "unexpected record type 20", "alert 10"},
		{"another record version", func(*Conn) []byte {
			return []byte{typeAppData, 3, 1, 0, 1, 1}
		}, "record version", "alert 70"},
		{"only padding", func(cli *Conn) []byte {
			return sealRaw(cli, []byte{0, 0, 0})
		}, "without a content type", "alert 10"},
		{"a handshake message after the handshake", func(cli *Conn) []byte {
			return seal(cli, typeHandshake, []byte{4, 0, 0, 0})
		}, "unexpected handshake message 4", "alert 10"},
		{"a KeyUpdate of another length", func(cli *Conn) []byte {
			return seal(cli, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 2, 0, 0})
		}, "malformed KeyUpdate", "alert 50"},
		{"an unknown KeyUpdate request", func(cli *Conn) []byte {
			return seal(cli, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 7})
		}, "request_update 7", "alert 47"},
		{"an empty handshake record", func(cli *Conn) []byte {
			return seal(cli, typeHandshake, nil)
		}, "empty handshake record", "alert 10"},
		{"padding over the record size", func(cli *Conn) []byte {
			return sealRaw(cli, append(append(make([]byte, 0, maxPlaintext+2), 'x', typeAppData), make([]byte, maxPlaintext)...))
		}, "over the 16385 allowed", "alert 22"},
		{"records without data", func(cli *Conn) []byte {
			var b []byte
			for i := 0; i <= maxUselessRecords; i++ {
				b = append(b, seal(cli, typeAppData, nil)...)
			}
			return b
		}, "records in a row without data", "alert 10"},
		{"data after a KeyUpdate", func(cli *Conn) []byte {
			return seal(cli, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 0, handshakeKeyUpdate, 0, 0, 1, 0})
		}, "after a KeyUpdate", "alert 10"},
		{"an unknown content type", func(cli *Conn) []byte {
			return seal(cli, 99, []byte("x"))
		}, "unexpected content type 99", "alert 10"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli, raw := peer(t)
			if _, err := raw.Write(tc.record(cli)); err != nil {
				t.Fatal(err)
			}
			_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := srv.Read(make([]byte, 10))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("server read: %v, want %q", err, tc.err)
			}
			// The error stays, and the client was told.
			if _, again := srv.Read(make([]byte, 10)); again != err {
				t.Fatalf("second read: %v", again)
			}
			if _, err := srv.Write([]byte("more")); err == nil {
				t.Fatal("the server still writes after a fatal alert")
			}
			_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := cli.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), tc.alert) {
				t.Fatalf("client read: %v, want %q", err, tc.alert)
			}
		})
	}
}

// seal makes a record of content type typ under the client's keys.
func seal(c *Conn, typ byte, data []byte) []byte {
	return sealRaw(c, append(append([]byte(nil), data...), typ))
}

// sealRaw makes a record of the inner plaintext inner (content type and
// padding included) under the client's keys.
func sealRaw(c *Conn, inner []byte) []byte {
	rec := make([]byte, headerLen, headerLen+len(inner)+tagLen)
	rec[0], rec[1], rec[2] = typeAppData, 3, 3
	binary.BigEndian.PutUint16(rec[3:], uint16(len(inner)+tagLen))
	rec = c.out.aead.Seal(rec, c.out.nonce(), inner, rec[:headerLen])
	c.out.seq++
	return rec
}

func TestEndOfStreamInsideARecord(t *testing.T) {
	srv, cli, raw := peer(t)
	rec := seal(cli, typeAppData, []byte("cut short"))
	if _, err := raw.Write(rec[:len(rec)-3]); err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).CloseWrite()
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := srv.Read(make([]byte, 10)); err != io.ErrUnexpectedEOF {
		t.Fatalf("read: %v", err)
	}
}

func TestAReadTimeoutLosesNothing(t *testing.T) {
	// A small record, then one larger than the connection's own buffer,
	// cut inside its header and inside its body.
	large := bytes.Repeat([]byte("0123456789"), 300)
	for _, cut := range []int{3, 7, 200, 1000} {
		srv, cli, raw := peer(t)
		stream := append(seal(cli, typeAppData, []byte("small")), seal(cli, typeAppData, large)...)
		stream1, stream2 := stream[:len("small")+1+tagLen+headerLen+cut], stream[len("small")+1+tagLen+headerLen+cut:]
		if _, err := raw.Write(stream1); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 4000)
		if n, err := srv.Read(got); err != nil || string(got[:n]) != "small" {
			t.Fatalf("cut %d: read %q, %v", cut, got[:n], err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := srv.Read(got)
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("cut %d: read: %v", cut, err)
		}
		if _, err := raw.Write(stream2); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		var read []byte
		for len(read) < len(large) {
			n, err := srv.Read(got[:1000])
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			read = append(read, got[:n]...)
		}
		if !bytes.Equal(read, large) {
			t.Fatalf("cut %d: the large record came back changed", cut)
		}
		if srv.pooled != nil {
			t.Fatalf("cut %d: the pooled buffer is kept with nothing in it", cut)
		}
	}
}

func TestRecordsReadTogetherComeOneByOne(t *testing.T) {
	srv, cli, raw := peer(t)
	both := append(seal(cli, typeAppData, []byte("one")), seal(cli, typeAppData, []byte("two"))...)
	if _, err := raw.Write(both); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 64)
	for _, want := range []string{"one", "two"} {
		n, err := srv.Read(got)
		if err != nil || string(got[:n]) != want {
			t.Fatalf("read %q, %v; want %q", got[:n], err, want)
		}
	}
	if srv.pooled != nil {
		t.Fatal("the read buffer is kept with nothing in it")
	}
}

func TestCloseEndsAStuckWrite(t *testing.T) {
	srv, _, _ := peer(t)
	// The client reads nothing: the write fills both socket buffers and
	// blocks until Close.
	errc := make(chan error, 1)
	go func() {
		_, err := srv.Write(make([]byte, 64<<20))
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for the stuck Write")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the stuck write succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck Write goes on after Close")
	}
}

func TestKeyUpdateRequestsWhileSilentGetOneAnswer(t *testing.T) {
	srv, cli, raw := peer(t)
	next := func(secret []byte) []byte {
		out, err := expandLabel(srv.out.suite, secret, "traffic upd", srv.out.suite.hash().Size())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	once := next(srv.out.secret)
	var b []byte
	for i := 0; i < 5; i++ {
		b = append(b, seal(cli, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 1})...)
		if err := cli.out.update(); err != nil {
			t.Fatal(err)
		}
	}
	b = append(b, seal(cli, typeAppData, []byte("data"))...)
	if _, err := raw.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 10)
	if n, err := srv.Read(got); err != nil || string(got[:n]) != "data" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if !bytes.Equal(srv.out.secret, once) {
		t.Fatal("5 requests while silent did not move the server's keys exactly once")
	}
	// The client moves to the one new key and reads what follows it.
	if _, err := srv.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := cli.Read(got); err != nil || string(got[:n]) != "answer" {
		t.Fatalf("client read %q, %v", got[:n], err)
	}
	// After application data, a new request gets a new answer.
	if _, err := raw.Write(seal(cli, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 1})); err != nil {
		t.Fatal(err)
	}
	_ = cli.out.update()
	if _, err := raw.Write(seal(cli, typeAppData, []byte("more"))); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Read(got); err != nil || string(got[:n]) != "more" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if !bytes.Equal(srv.out.secret, next(once)) {
		t.Fatal("a request after application data did not move the server's keys once more")
	}
}

func TestUserCanceledIsIgnored(t *testing.T) {
	srv, cli, raw := peer(t)
	b := append(seal(cli, typeAlert, []byte{1, alertUserCanceled}), seal(cli, typeAppData, []byte("still here"))...)
	if _, err := raw.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 20)
	if n, err := srv.Read(got); err != nil || string(got[:n]) != "still here" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
}

func TestTheEndReleasesTheReadBuffer(t *testing.T) {
	// A large record and a close_notify arrive together; the reader takes
	// part of the record, then the rest, then the end.
	srv, cli, raw := peer(t)
	large := bytes.Repeat([]byte("x"), 5000)
	b := append(seal(cli, typeAppData, large), seal(cli, typeAlert, []byte{1, alertCloseNotify})...)
	b = append(b, 1, 2, 3) // and bytes after it, never read
	if _, err := raw.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(srv)
	if err != nil || !bytes.Equal(got, large) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if srv.pooled != nil {
		t.Fatal("the pooled buffer is kept after the end")
	}
}

func TestReadsStartAtTheFrontOfTheBuffer(t *testing.T) {
	// Small records one after the other: each is read whole by one read of
	// the socket into the connection's own buffer, however far into that
	// buffer the previous ones went.
	srv, cli, raw := peer(t)
	counting := &countingConn{Conn: srv.conn}
	srv.conn = counting
	msg := bytes.Repeat([]byte("q"), 100)
	got := make([]byte, 200)
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 20; i++ {
		if _, err := raw.Write(seal(cli, typeAppData, msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if n, err := srv.Read(got); err != nil || n != len(msg) {
			t.Fatalf("record %d: %d bytes, %v", i, n, err)
		}
	}
	if counting.reads > 20 {
		t.Fatalf("%d reads of the socket for 20 records", counting.reads)
	}
}

type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads++
	return c.Conn.Read(b)
}

func TestBufferedSaysWhenAReadNeedsNoSocket(t *testing.T) {
	srv, cli, raw := peer(t)
	if srv.Buffered() {
		t.Fatal("buffered before anything arrived")
	}
	one, two := seal(cli, typeAppData, []byte("one")), seal(cli, typeAppData, []byte("two"))
	if _, err := raw.Write(append(one, two[:8]...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 2)
	if n, err := srv.Read(got); err != nil || string(got[:n]) != "on" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if !srv.Buffered() {
		t.Fatal("data not yet returned is not reported")
	}
	if n, err := srv.Read(got); err != nil || string(got[:n]) != "e" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if srv.Buffered() {
		t.Fatal("a record in part is reported as readable")
	}
	if _, err := raw.Write(two[8:]); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Read(got[:]); err != nil || string(got[:n]) != "tw" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if n, err := srv.Read(got[:]); err != nil || string(got[:n]) != "o" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	// Two whole records read together: after the first, the second is
	// readable without the socket.
	if _, err := raw.Write(append(seal(cli, typeAppData, []byte("ab")), seal(cli, typeAppData, []byte("cd"))...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := srv.Read(got); err != nil || string(got[:n]) != "ab" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if !srv.Buffered() {
		t.Fatal("a whole record read with the last one is not reported")
	}
}

func TestEverySuiteWithKeyUpdates(t *testing.T) {
	// Interop with a real client is TestOpenSSLClients; this runs each
	// suite's key schedule through updates in both directions.
	for id, s := range suites {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			app, proxy := testconn.TCPPair(t)
			cs, ss := make([]byte, s.hash().Size()), make([]byte, s.hash().Size())
			_, _ = rand.Read(cs)
			_, _ = rand.Read(ss)
			srv, err := newConn(proxy, tls.VersionTLS13, id, cs, ss)
			if err != nil {
				t.Fatal(err)
			}
			cli, err := newConn(app, tls.VersionTLS13, id, ss, cs)
			if err != nil {
				t.Fatal(err)
			}
			done := echo(srv)
			msg := bytes.Repeat([]byte("m"), 40000)
			for i := 0; i < 3; i++ {
				requestUpdate(t, cli)
				go func() { _, _ = cli.Write(msg) }()
				got := make([]byte, len(msg))
				_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("round %d: %v", i, err)
				}
			}
			cli.Close()
			if err := <-done; err != nil {
				t.Fatalf("echo: %v", err)
			}
		})
	}
}

// requestUpdate sends a KeyUpdate with update_requested from the client's
// end, and moves its writing keys.
func requestUpdate(t *testing.T, cli *Conn) {
	t.Helper()
	cli.wmu.Lock()
	defer cli.wmu.Unlock()
	if err := cli.writeRecordLocked(typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 1}); err != nil {
		t.Fatal(err)
	}
	if err := cli.out.update(); err != nil {
		t.Fatal(err)
	}
}
