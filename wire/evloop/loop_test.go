package evloop

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"tdb/internal/testconn"
	"tdb/wire/tls13"
)

// forward relays every message to the other side, ends at 'X' from the
// client, ejects at 'J', and answers 'e' from the client with an 'E'.
type forward struct {
	read, wrote [2]atomic.Int64
}

func (f *forward) Message(from Side, typ byte, body []byte, out *Out) Verdict {
	switch {
	case from == Client && typ == 'X':
		return End
	case typ == 'J':
		return Eject
	case from == Client && typ == 'e':
		out.Message(Client, 'E', []byte("refused"))
		return Continue
	}
	out.Message(from.other(), typ, body)
	return Continue
}

func (f *forward) Read(from Side, n int) { f.read[from].Add(int64(n)) }

func (f *forward) Wrote(to Side, n int) { f.wrote[to].Add(int64(n)) }

func frame(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func readFrame(t *testing.T, c net.Conn) (byte, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return hdr[0], body
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) { return testconn.TCPPair(t) }

type rig struct {
	app, db net.Conn // the far ends: the application and the database
	pair    *Pair
	h       *forward
	conns   [2]net.Conn // the proxy's ends
	ep      [2]Endpoint
	unread  [2][]byte
	result  chan Result
}

func newRig(t *testing.T, l *Loop, unread ...[]byte) *rig {
	t.Helper()
	app, proxyClient := tcpPair(t)
	proxyBackend, db := tcpPair(t)
	r := &rig{app: app, db: db, h: &forward{}}
	copy(r.unread[:], unread)
	for i, c := range []net.Conn{proxyClient, proxyBackend} {
		r.conns[i] = NewSocket(c)
		ep, ok := EndpointOf(r.conns[i])
		if !ok {
			t.Fatalf("no endpoint for %T", r.conns[i])
		}
		r.ep[i] = ep
	}
	r.result = make(chan Result, 1)
	p, err := l.Relay(r.ep[0], r.ep[1], r.h, r.unread, func(res Result) { r.result <- res })
	if err != nil {
		t.Fatal(err)
	}
	r.pair = p
	return r
}

func newLoop(t *testing.T) *Loop {
	t.Helper()
	if !Supported() {
		if os.Getenv("TDB_REQUIRE_ALL") != "" {
			t.Fatal("TDB_REQUIRE_ALL is set but this platform has no epoll (CI runs on Linux)")
		}
		t.Skip("evloop: no epoll on this platform (TDB_REQUIRE_ALL=1 makes this a failure)")
	}
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func (r *rig) wait(t *testing.T) Result {
	t.Helper()
	select {
	case res := <-r.result:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("the pair did not leave the loop")
		return Result{}
	}
}

func TestRelayBothWaysAndEnd(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	// Two messages in one write, one split across writes.
	q := frame('Q', []byte("select 1\x00"))
	if _, err := r.app.Write(append(append([]byte{}, q...), q...)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if typ, body := readFrame(t, r.db); typ != 'Q' || string(body) != "select 1\x00" {
			t.Fatalf("backend got %c %q", typ, body)
		}
	}
	long := frame('Q', bytes.Repeat([]byte("x"), 3000))
	_, _ = r.app.Write(long[:7])
	time.Sleep(20 * time.Millisecond)
	_, _ = r.app.Write(long[7:])
	if typ, body := readFrame(t, r.db); typ != 'Q' || len(body) != 3000 {
		t.Fatalf("backend got %c (%d bytes)", typ, len(body))
	}
	_, _ = r.db.Write(frame('Z', []byte("I")))
	if typ, body := readFrame(t, r.app); typ != 'Z' || string(body) != "I" {
		t.Fatalf("client got %c %q", typ, body)
	}
	// A message the handler answers itself.
	_, _ = r.app.Write(frame('e', nil))
	if typ, body := readFrame(t, r.app); typ != 'E' || string(body) != "refused" {
		t.Fatalf("client got %c %q", typ, body)
	}
	_, _ = r.app.Write(frame('X', nil))
	res := r.wait(t)
	if res.Reason != Ended || len(res.Unread[0])+len(res.Unread[1]) != 0 || res.Unflushed != [2]bool{} {
		t.Fatalf("result %+v", res)
	}
	if got := r.h.read[Client].Load(); got != int64(2*len(q)+len(long)+5+5) {
		t.Fatalf("client bytes counted %d", got)
	}
	// The connections are the runtime's again and still open.
	c := r.conns[Backend]
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(frame('S', nil)); err != nil {
		t.Fatal(err)
	}
	if typ, _ := readFrame(t, r.db); typ != 'S' {
		t.Fatalf("after attach the backend got %c", typ)
	}
}

func TestEjectHandsBackUnreadBytes(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	q := frame('Q', []byte("a\x00"))
	j := frame('J', []byte("stop here"))
	var batch []byte
	batch = append(batch, q...)
	batch = append(batch, j...)
	batch = append(batch, q...)
	_, _ = r.app.Write(batch)
	res := r.wait(t)
	if res.Reason != Ejected {
		t.Fatalf("reason %v", res.Reason)
	}
	if want := append(append([]byte{}, j...), q...); !bytes.Equal(res.Unread[Client], want) {
		t.Fatalf("unread %q, want %q", res.Unread[Client], want)
	}
	if typ, _ := readFrame(t, r.db); typ != 'Q' {
		t.Fatalf("the message before the eject was not relayed: %c", typ)
	}
}

func TestLargeMessageEjects(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	big := frame('D', bytes.Repeat([]byte("y"), MaxMessage))
	go func() { _, _ = r.db.Write(big) }()
	res := r.wait(t)
	if res.Reason != Ejected || len(res.Unread[Backend]) == 0 || !bytes.Equal(res.Unread[Backend], big[:len(res.Unread[Backend])]) {
		t.Fatalf("reason %v, unread %d bytes", res.Reason, len(res.Unread[Backend]))
	}
}

func TestMalformedLengthEjects(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	_, _ = r.app.Write([]byte{'Q', 0, 0, 0, 1})
	res := r.wait(t)
	if res.Reason != Ejected || !bytes.Equal(res.Unread[Client], []byte{'Q', 0, 0, 0, 1}) {
		t.Fatalf("result %+v", res)
	}
}

func TestBackPressureKeepsEveryByte(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	// The database streams 40 MB while the application reads slowly at first.
	const rows, size = 20000, 2000
	row := frame('D', bytes.Repeat([]byte("r"), size))
	go func() {
		for i := 0; i < rows; i++ {
			if _, err := r.db.Write(row); err != nil {
				return
			}
		}
		_, _ = r.db.Write(frame('Z', []byte("I")))
	}()
	time.Sleep(200 * time.Millisecond) // let the socket buffers fill
	for i := 0; i < rows; i++ {
		typ, body := readFrame(t, r.app)
		if typ != 'D' || len(body) != size {
			t.Fatalf("row %d: %c %d bytes", i, typ, len(body))
		}
	}
	if typ, _ := readFrame(t, r.app); typ != 'Z' {
		t.Fatalf("after the rows: %c", typ)
	}
	r.pair.Kick()
	if res := r.wait(t); res.Reason != Kicked {
		t.Fatalf("reason %v", res.Reason)
	}
}

func TestClientGoneAndBackendGone(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	_, _ = r.app.Write([]byte{'Q', 0, 0}) // half a header, then gone
	r.app.Close()
	res := r.wait(t)
	if res.Reason != ClientClosed || !bytes.Equal(res.Unread[Client], []byte{'Q', 0, 0}) {
		t.Fatalf("result %+v", res)
	}
	r2 := newRig(t, l)
	r2.db.Close()
	if res := r2.wait(t); res.Reason != BackendClosed {
		t.Fatalf("reason %v", res.Reason)
	}
}

func TestCloseKicksEveryPair(t *testing.T) {
	l := newLoop(t)
	rigs := []*rig{newRig(t, l), newRig(t, l), newRig(t, l)}
	l.Close()
	for _, r := range rigs {
		if res := r.wait(t); res.Reason != Kicked {
			t.Fatalf("reason %v", res.Reason)
		}
	}
	a, b := tcpPair(t)
	sa, sb := NewSocket(a), NewSocket(b)
	if _, err := l.Relay(Endpoint{Socket: sa.(*Socket)}, Endpoint{Socket: sb.(*Socket)}, &forward{}, [2][]byte{}, func(Result) {}); err == nil {
		t.Fatal("a closed loop took a pair")
	}
	// Refused, the connections are still usable.
	_ = sa.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := sa.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestEndpointOfRefusesOtherConns(t *testing.T) {
	a, _ := tcpPair(t)
	type wrapped struct{ net.Conn }
	for _, c := range []net.Conn{a, wrapped{a}, NewSocket(wrapped{a}), tls.Server(a, &tls.Config{})} {
		if _, ok := EndpointOf(c); ok {
			t.Fatalf("an endpoint for %T", c)
		}
	}
}

func TestCloseInsideTheLoopKicks(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	_ = r.conns[Client].Close()
	if res := r.wait(t); res.Reason != Kicked {
		t.Fatalf("reason %v", res.Reason)
	}
	// Given back closed: the application sees the end of the stream.
	_ = r.app.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.app.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after close: %d, %v", n, err)
	}
}

func TestTLSClientInTheLoop(t *testing.T) {
	for _, server := range tlsServers {
		t.Run(server, func(t *testing.T) { testTLSClientInTheLoop(t, server) })
	}
}

func testTLSClientInTheLoop(t *testing.T, server string) {
	l := newLoop(t)
	srv, cli := tlsPair(t, server)
	proxyBackend, db := tcpPair(t)
	// Two records arrive together; reading the first makes crypto/tls keep
	// the second, which the socket no longer shows: the loop must find it.
	_, _ = cli.Write(frame('Q', []byte("before\x00")))
	_, _ = cli.Write(frame('Q', []byte("buffered\x00")))
	time.Sleep(50 * time.Millisecond)
	first := make([]byte, len(frame('Q', []byte("before\x00"))))
	if _, err := io.ReadFull(srv, first); err != nil {
		t.Fatal(err)
	}
	client, _ := EndpointOf(srv)
	backend, _ := EndpointOf(NewSocket(proxyBackend))
	h := &forward{}
	done := make(chan Result, 1)
	if _, err := l.Relay(client, backend, h, [2][]byte{}, func(r Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	if typ, body := readFrame(t, db); typ != 'Q' || string(body) != "buffered\x00" {
		t.Fatalf("the record crypto/tls held: %c %q", typ, body)
	}
	// Many messages in few TLS records, and a result larger than the
	// socket buffers going back through TLS.
	var batch []byte
	for i := 0; i < 500; i++ {
		batch = append(batch, frame('Q', []byte("select 1\x00"))...)
	}
	go func() { _, _ = cli.Write(batch) }()
	for i := 0; i < 500; i++ {
		if typ, _ := readFrame(t, db); typ != 'Q' {
			t.Fatalf("message %d: %c", i, typ)
		}
	}
	const rows = 5000
	row := frame('D', bytes.Repeat([]byte("r"), 3000))
	go func() {
		for i := 0; i < rows; i++ {
			_, _ = db.Write(row)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < rows; i++ {
		if typ, body := readFrame(t, cli); typ != 'D' || len(body) != 3000 {
			t.Fatalf("row %d: %c %d", i, typ, len(body))
		}
	}
	_, _ = cli.Write(frame('X', nil))
	select {
	case res := <-done:
		if res.Reason != Ended {
			t.Fatalf("reason %v", res.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pair did not leave")
	}
	// The TLS session goes on outside the loop.
	go func() { _, _ = srv.Write(frame('Z', []byte("I"))) }()
	if typ, _ := readFrame(t, cli); typ != 'Z' {
		t.Fatalf("after the loop: %c", typ)
	}
}

// tlsServers are the ways a TLS client reaches the loop: crypto/tls over
// the Socket, tls13's own record layer after the handshake, and crypto/tls
// behind tls13.Server's handshake reader (a TLS 1.2 session).
var tlsServers = []string{"crypto/tls", "tls13", "tls13 fallback"}

// tlsPair returns a TLS connection over a Socket (the proxy's end) and the
// application's end, handshake done.
func tlsPair(t *testing.T, server string) (srv net.Conn, cli *tls.Conn) {
	t.Helper()
	app, proxySide := tcpPair(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{testconn.SelfSigned(t)}}
	ccfg := &tls.Config{InsecureSkipVerify: true}
	if server == "tls13 fallback" {
		ccfg.MaxVersion = tls.VersionTLS12
	}
	cli = tls.Client(app, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	if server == "crypto/tls" {
		tc := tls.Server(NewSocket(proxySide), cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		srv = tc
	} else {
		var err error
		if srv, _, err = tls13.Server(context.Background(), NewSocket(proxySide), cfg); err != nil {
			t.Fatal(err)
		}
		if _, own := srv.(*tls13.Conn); own != (server == "tls13") {
			t.Fatalf("%s: the session went on as a %T", server, srv)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

func TestUnreadBytesGoFirst(t *testing.T) {
	l := newLoop(t)
	q := frame('Q', []byte("first\x00"))
	r := newRig(t, l, append(append([]byte{}, q...), 'Q', 0), frame('N', []byte("notice")))
	// The client's second message was read in part before the loop took it.
	_, _ = r.app.Write(frame('Q', []byte("second\x00"))[2:])
	for _, want := range []string{"first\x00", "second\x00"} {
		if typ, body := readFrame(t, r.db); typ != 'Q' || string(body) != want {
			t.Fatalf("backend got %c %q, want %q", typ, body, want)
		}
	}
	if typ, body := readFrame(t, r.app); typ != 'N' || string(body) != "notice" {
		t.Fatalf("client got %c %q", typ, body)
	}
	want := int64(len(q) + len(frame('Q', []byte("second\x00"))))
	for deadline := time.Now().Add(5 * time.Second); r.h.wrote[Backend].Load() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("bytes written to the backend: %d, want %d", r.h.wrote[Backend].Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestParkWaitsForTheFirstBytes(t *testing.T) {
	l := newLoop(t)
	park := func(c net.Conn) chan Result {
		ep, ok := EndpointOf(c)
		if !ok {
			t.Fatalf("no endpoint for %T", c)
		}
		ch := make(chan Result, 1)
		if err := l.Park(ep, func(r Result) { ch <- r }); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	wait := func(ch chan Result) Result {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("the parked client was not let go")
			return Result{}
		}
	}

	app, proxySide := tcpPair(t)
	sock := NewSocket(proxySide)
	ch := park(sock)
	select {
	case r := <-ch:
		t.Fatalf("let go before the client spoke: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	q := frame('Q', []byte("select 1\x00"))
	_, _ = app.Write(q)
	if r := wait(ch); r.Reason != Ejected || !bytes.Equal(r.Unread[Client], q) {
		t.Fatalf("result %+v", r)
	}
	// Given back: the connection works as before.
	_ = sock.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := sock.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}

	app2, proxySide2 := tcpPair(t)
	ch = park(NewSocket(proxySide2))
	app2.Close()
	if r := wait(ch); r.Reason != ClientClosed {
		t.Fatalf("client gone: %+v", r)
	}

	_, proxySide3 := tcpPair(t)
	sock3 := NewSocket(proxySide3)
	ch = park(sock3)
	_ = sock3.Close()
	if r := wait(ch); r.Reason != Kicked {
		t.Fatalf("closed: %+v", r)
	}
}

func TestParkFindsARecordTLSHolds(t *testing.T) {
	for _, server := range tlsServers {
		t.Run(server, func(t *testing.T) { testParkFindsARecordTLSHolds(t, server) })
	}
}

func testParkFindsARecordTLSHolds(t *testing.T, server string) {
	l := newLoop(t)
	srv, cli := tlsPair(t, server)
	_, _ = cli.Write([]byte("one"))
	_, _ = cli.Write([]byte("two"))
	time.Sleep(50 * time.Millisecond)
	b := make([]byte, 3)
	if _, err := io.ReadFull(srv, b); err != nil {
		t.Fatal(err)
	}
	ep, _ := EndpointOf(srv)
	ch := make(chan Result, 1)
	if err := l.Park(ep, func(r Result) { ch <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.Reason != Ejected || string(r.Unread[Client]) != "two" {
			t.Fatalf("result %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the record crypto/tls held was not found")
	}
}

// TestLeftPairIsForgotten: once a pair has left, its slot holds nothing of
// it (its handler holds a whole session), and a new pair in the slot gets a
// new generation.
func TestLeftPairIsForgotten(t *testing.T) {
	l := newLoop(t)
	r := newRig(t, l)
	id, gen := r.pair.id, r.pair.gen
	_, _ = r.app.Write(frame('X', nil))
	r.wait(t)
	l.mu.Lock()
	slot := l.slots[id]
	l.mu.Unlock()
	if slot != nil {
		t.Fatal("the slot still holds the pair that left")
	}
	r2 := newRig(t, l)
	if r2.pair.id != id || r2.pair.gen == gen {
		t.Fatalf("new pair in slot %d gen %d, after slot %d gen %d", r2.pair.id, r2.pair.gen, id, gen)
	}
	_, _ = r2.app.Write(frame('X', nil))
	r2.wait(t)
}
