package evloop

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"golang.org/x/sys/unix"

	"tdb/wire/tls13"
)

// readBufferSize is the loop's one read buffer: a read takes at most this
// much from a socket, and a message must fit in it to be framed here.
const readBufferSize = 64 << 10

// maxKeptPartial bounds the partial-message buffer a pair keeps between
// reads once it is empty again.
const maxKeptPartial = 4 << 10

// Supported reports whether the loop can run here.
func Supported() bool { return true }

// Loop is one epoll set served by one locked OS thread.
type Loop struct {
	epfd, evfd int

	mu      sync.Mutex
	slots   []*Pair  // index = pair id; nil once the pair has left
	gens    []uint32 // index = pair id: the generation of its last pair
	free    []uint32
	kicks   []*Pair
	starts  []*Pair // pairs to handle without waiting for their sockets (unread bytes, TLS buffers)
	closed  bool
	stopped bool // the loop has ended and closed its descriptors
	done    chan struct{}

	tid     int   // the loop's thread, set before New returns
	niceErr error // why Options.Nice could not be applied, set before New returns

	// Owned by the loop thread.
	rbuf [readBufferSize]byte
	out  Out
}

// Pair is a client and a backend socket relayed by a Loop.
type Pair struct {
	loop    *Loop
	id, gen uint32
	ep      [2]Endpoint
	h       Handler
	partial [2][]byte    // a message read in part, per side
	events  [2]uint32    // the interest registered, per side
	again   [2]bool      // read this side again without waiting (TLS may hold records)
	then    func(Result) // runs on a new goroutine once the pair has left
	last    Side         // Backend, or Client for a parked client alone
	left    bool
	// registered: the pair has its slot (set under the loop's lock); a
	// kick before then is repeated by Relay.
	registered bool
}

// Endpoint is one side of a pair: a Socket, and the TLS connection over it
// for a TLS client (a *tls.Conn or a *tls13.Conn).
type Endpoint struct {
	Socket *Socket
	TLS    net.Conn
}

// EndpointOf returns the endpoint for a connection the loop can take: a
// Socket, or a TLS connection over one (directly, or through the
// handshake's record reader of tls13.Server, which reads straight through
// after the handshake).
func EndpointOf(c net.Conn) (Endpoint, bool) {
	switch c := c.(type) {
	case *Socket:
		return Endpoint{Socket: c}, true
	case *tls13.Conn:
		if s, ok := c.NetConn().(*Socket); ok {
			return Endpoint{Socket: s, TLS: c}, true
		}
	case *tls.Conn:
		nc := c.NetConn()
		if r, ok := nc.(interface{ NetConn() net.Conn }); ok {
			nc = r.NetConn()
		}
		if s, ok := nc.(*Socket); ok {
			return Endpoint{Socket: s, TLS: c}, true
		}
	}
	return Endpoint{}, false
}

// conn is what the side reads and writes: the TLS connection, or the socket.
func (e Endpoint) conn() net.Conn {
	if e.TLS != nil {
		return e.TLS
	}
	return e.Socket
}

// read reads what the side has without waiting; 0, nil when nothing is there.
func (e Endpoint) read(b []byte) (int, error) {
	n, err := e.conn().Read(b)
	if err == errWouldBlock {
		return n, nil
	}
	return n, err
}

// write sends b; what the kernel does not take stays pending in the socket.
func (e Endpoint) write(b []byte) error {
	_, err := e.conn().Write(b)
	return err
}

// fd is the descriptor the loop watches for side (its socket's, while the
// loop has it).
func (p *Pair) fd(side Side) int { return p.ep[side].Socket.fd }

// New starts a loop on its own locked OS thread.
func New(o Options) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errors.Wrap(err, "epoll_create1")
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, errors.Wrap(err, "eventfd")
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, errors.Wrap(err, "epoll_ctl eventfd")
	}
	l := &Loop{epfd: epfd, evfd: evfd, done: make(chan struct{})}
	started := make(chan struct{})
	go l.run(o, started)
	<-started
	return l, nil
}

// NiceErr says why the loop's thread could not take Options.Nice; nil when
// it did or none was asked for.
func (l *Loop) NiceErr() error { return l.niceErr }

// Close ends every pair (Kicked) and stops the loop.
func (l *Loop) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.wake()
	<-l.done
}

// Relay takes two endpoints from the Go runtime and relays between them;
// unread holds, per side, bytes already read from it (from a message
// boundary), handled first. When the pair leaves, then runs on a new
// goroutine with the connections given back to the runtime (what was
// pending for them written): no goroutine waits while the loop relays.
func (l *Loop) Relay(client, backend Endpoint, h Handler, unread [2][]byte, then func(Result)) (*Pair, error) {
	p := &Pair{loop: l, ep: [2]Endpoint{client, backend}, h: h, then: then, last: Backend}
	if err := l.add(p, unread); err != nil {
		return nil, err
	}
	return p, nil
}

// Park waits, without a goroutine, for a client that has no backend yet to
// send something or go away; then runs on a new goroutine with the
// connection given back and what was read (Unread[Client]; Reason Ejected
// when the client sent something, ClientClosed or Kicked otherwise).
func (l *Loop) Park(client Endpoint, then func(Result)) error {
	p := &Pair{loop: l, ep: [2]Endpoint{client}, then: then, last: Client}
	return l.add(p, [2][]byte{})
}

// add takes the pair's sockets from the Go runtime and registers them.
func (l *Loop) add(p *Pair, unread [2][]byte) error {
	for side := Client; side <= p.last; side++ {
		if err := p.ep[side].Socket.detach(p.Kick); err != nil {
			if side == Backend {
				p.ep[Client].Socket.attach()
			}
			return errors.Wrapf(err, "relay %s", side)
		}
	}
	started := false
	for side := Client; side <= p.last; side++ {
		if len(unread[side]) > 0 {
			p.partial[side] = append([]byte(nil), unread[side]...)
			started = true
		}
		if p.ep[side].TLS != nil {
			// The TLS connection may already hold records read with the last
			// ones before the loop: the socket would not say so.
			p.again[side] = true
			started = true
		}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		p.giveBack()
		return errors.New("evloop: closed")
	}
	if n := len(l.free); n > 0 {
		p.id = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		p.id = uint32(len(l.slots))
		l.slots = append(l.slots, nil)
		l.gens = append(l.gens, 0)
	}
	// A new generation tells the slot's new pair from events still queued
	// for its last one.
	p.gen = (l.gens[p.id] + 1) & 0x3fffffff
	l.gens[p.id] = p.gen
	l.slots[p.id] = p
	p.registered = true
	// Registered under the lock, so Close either sees the pair or refuses it.
	defer l.mu.Unlock()
	for side := Client; side <= p.last; side++ {
		p.events[side] = unix.EPOLLIN
		ev := p.event(side)
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, p.fd(side), &ev); err != nil {
			if side == Backend {
				_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.fd(Client), nil)
			}
			p.left = true
			l.release(p)
			p.giveBack()
			return errors.Wrapf(err, "epoll_ctl add %s", side)
		}
	}
	if started {
		l.starts = append(l.starts, p)
	}
	for side := Client; side <= p.last; side++ {
		if p.ep[side].Socket.isClosed() {
			l.kicks = append(l.kicks, p) // closed while it was being taken
			break
		}
	}
	if len(l.starts)+len(l.kicks) > 0 {
		l.wake()
	}
	return nil
}

// leftLoop gives the connections back and runs then (on its own goroutine).
func (p *Pair) leftLoop(r Result) {
	r.Unflushed = p.giveBack()
	p.then(r)
}

// giveBack attaches both sockets again; it reports, per side, whether
// pending bytes could not be written.
func (p *Pair) giveBack() (unflushed [2]bool) {
	for side := Client; side <= p.last; side++ {
		unflushed[side] = !p.ep[side].Socket.attach()
	}
	return unflushed
}

// Kick makes the pair leave the loop (Kicked) at the loop's next turn.
func (p *Pair) Kick() {
	l := p.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return // every pair has left; the eventfd's number may be another file's now
	}
	l.kicks = append(l.kicks, p)
	l.wake()
}

func (l *Loop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.evfd, one[:])
}

func (p *Pair) event(side Side) unix.EpollEvent {
	return unix.EpollEvent{Events: p.events[side], Fd: int32(p.id), Pad: int32(p.gen<<1 | uint32(side))}
}

// release frees the pair's slot (under l.mu). The slot forgets the pair (and
// the session its handler holds); its generation stays in gens, so an event
// still queued for the pair finds nothing.
func (l *Loop) release(p *Pair) {
	l.slots[p.id] = nil
	l.free = append(l.free, p.id)
}

// yieldEvery is how often a busy loop passes through Go's scheduler. Its
// raw system calls and its blocking epoll_wait never do, so to the runtime's
// monitor (sysmon) the loop looks like one goroutine running on the same
// scheduler tick: after 10 ms it preempts it by signal and takes its P in
// the middle of epoll_wait, and each such take sends the monitor back to
// waking every 20 us. At one client that was 0.3-0.4 monitor wake-ups per
// transaction and about 6% of the node's CPU per transaction (same-run A/B,
// `pgbench -S -M prepared -c 1`, five rounds: 37-47 against 37-42 us;
// throughput unchanged at 1, 32 and 256 clients). A yield every 5 ms moves
// the tick on for the price of one thread hand-off.
const yieldEvery = 5 * time.Millisecond

func (l *Loop) run(o Options, started chan<- struct{}) {
	// Locked for good: when run returns the thread ends with it, so its
	// niceness never passes to other goroutines (and the runtime starts new
	// threads from a template thread, not from a locked one).
	runtime.LockOSThread()
	l.tid = unix.Gettid()
	if o.Nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, l.tid, o.Nice); err != nil {
			l.niceErr = errors.Wrapf(err, "nice %d for the relay loop's thread", o.Nice)
		}
	}
	close(started)
	defer close(l.done)
	defer func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.stopped = true
		unix.Close(l.epfd)
		unix.Close(l.evfd)
	}()
	events := make([]unix.EpollEvent, 128)
	lastYield := time.Now()
	for {
		if now := time.Now(); now.Sub(lastYield) > yieldEvery {
			runtime.Gosched()
			lastYield = now
		}
		n, err := poll(l.epfd, events)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic(errors.Wrap(err, "epoll_wait"))
		}
		for i := 0; i < n; i++ {
			ev := events[i]
			if ev.Fd == -1 {
				if l.control() {
					return
				}
				continue
			}
			l.mu.Lock()
			var p *Pair
			if id := int(ev.Fd); id < len(l.slots) {
				p = l.slots[id]
			}
			l.mu.Unlock()
			gen, side := uint32(ev.Pad)>>1, Side(ev.Pad&1)
			if p == nil || p.left || p.gen != gen {
				continue // an event for a pair that has left
			}
			l.serve(p, side, ev.Events)
		}
	}
}

// control handles the eventfd: kicks, and Close. It reports whether the
// loop is to stop.
func (l *Loop) control() bool {
	var b [8]byte
	_, _ = unix.Read(l.evfd, b[:])
	l.mu.Lock()
	var kicks []*Pair
	for _, p := range l.kicks {
		if p.registered {
			kicks = append(kicks, p)
		}
	}
	starts := l.starts
	l.kicks, l.starts = nil, nil
	closed := l.closed
	var all []*Pair
	if closed {
		for _, p := range l.slots {
			if p != nil && !p.left {
				all = append(all, p)
			}
		}
	}
	l.mu.Unlock()
	for _, p := range starts {
		for side := Client; side <= p.last && !p.left; side++ {
			if len(p.partial[side]) > 0 {
				l.handle(p, side, false)
			}
		}
		l.settle(p)
	}
	for _, p := range kicks {
		if !p.left {
			l.leave(p, Result{Reason: Kicked})
		}
	}
	for _, p := range all {
		if !p.left {
			l.leave(p, Result{Reason: Kicked})
		}
	}
	return closed
}

// serve handles readiness of one side of a pair.
func (l *Loop) serve(p *Pair, side Side, events uint32) {
	if p.last == Client {
		l.unpark(p)
		return
	}
	if events&unix.EPOLLOUT != 0 && p.ep[side].Socket.pendingLen() > 0 {
		if err := p.ep[side].Socket.flush(); err != nil {
			l.leave(p, Result{Reason: closedReason(side), Err: err})
			return
		}
	}
	switch {
	case p.events[side]&unix.EPOLLIN != 0 && events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0:
		l.handle(p, side, true) // a hang-up or error shows as the read's end of stream or error
	case events&(unix.EPOLLHUP|unix.EPOLLERR) != 0:
		// Not reading this side (the other's output is blocked), and it is
		// gone: a level-triggered hang-up would wake the loop forever.
		l.leave(p, Result{Reason: closedReason(side), Err: errors.New("connection closed")})
	}
	l.settle(p)
}

// settle updates what the pair waits for, and reads again the sides that
// may hold more than their sockets show (a TLS connection buffers records;
// a side whose reading was paused may have them).
func (l *Loop) settle(p *Pair) {
	if p.last == Client {
		if !p.left && p.again[Client] {
			p.again[Client] = false
			l.unpark(p)
		}
		return
	}
	for turns := 0; !p.left; turns++ {
		l.updateInterest(p)
		side := Client
		if !p.again[Client] {
			side = Backend
		}
		if p.left || !p.again[side] || p.events[side]&unix.EPOLLIN == 0 {
			return
		}
		if turns == 8 { // let other pairs run; come back next turn
			l.mu.Lock()
			l.starts = append(l.starts, p)
			l.mu.Unlock()
			l.wake()
			return
		}
		p.again[side] = false
		l.handle(p, side, true)
	}
}

func closedReason(side Side) Reason {
	if side == Client {
		return ClientClosed
	}
	return BackendClosed
}

// unpark lets a parked client go once it has sent something or gone away.
func (l *Loop) unpark(p *Pair) {
	n, err := p.ep[Client].read(l.rbuf[:])
	switch {
	case err != nil:
		r := Result{Reason: ClientClosed}
		if err != io.EOF {
			r.Err = err
		}
		l.leave(p, r)
	case n > 0:
		r := Result{Reason: Ejected}
		r.Unread[Client] = append([]byte(nil), l.rbuf[:n]...)
		l.leave(p, r)
	}
	// Nothing yet (a TLS record in part): keep waiting.
}

// handle reads what side has (when read is set), hands each whole message
// to the handler, and writes what the handler produced.
func (l *Loop) handle(p *Pair, side Side, read bool) {
	buf := l.rbuf[:]
	if len(p.partial[side]) > len(buf) {
		// Handed in with more unread bytes than the buffer holds (a
		// message the goroutine relay had begun to read): they go back
		// whole, for the caller's reader.
		r := Result{Reason: Ejected}
		r.Unread[side] = p.partial[side]
		p.partial[side] = nil
		l.leave(p, r)
		return
	}
	have := copy(buf, p.partial[side])
	var n int
	var err error
	if read {
		// Read until the side has nothing more: a TLS connection may hold
		// whole records it read from the socket together.
		for have+n < len(buf) {
			m, rerr := p.ep[side].read(buf[have+n:])
			n += m
			if rerr != nil {
				err = rerr
				break
			}
			if m == 0 {
				break
			}
			if p.ep[side].TLS == nil {
				break // level-triggered: the socket says when there is more
			}
			if c, ok := p.ep[side].TLS.(*tls13.Conn); ok && !c.Buffered() {
				break // the same, once the record layer holds no whole record
			}
		}
		if n > 0 {
			p.h.Read(side, n)
		}
		if have+n == len(buf) && err == nil && p.ep[side].TLS != nil {
			p.again[side] = true
		}
		if n == 0 && err == nil {
			return // spurious wake-up
		}
	}
	data := buf[:have+n]
	l.out.Reset()
	pos, verdict := 0, Continue
	for verdict == Continue {
		if len(data)-pos < 5 {
			break
		}
		length := int(binary.BigEndian.Uint32(data[pos+1:]))
		if length < 4 || length > readBufferSize-1 {
			verdict = Eject // the caller's reader refuses or streams it
			break
		}
		if len(data)-pos < 1+length {
			break
		}
		l.out.ahead = data[pos+1+length:]
		verdict = p.h.Message(side, data[pos], data[pos+5:pos+1+length], &l.out)
		if verdict != Eject {
			pos += 1 + length
		}
	}
	l.out.ahead = nil
	rest := data[pos:]
	if verdict == Continue && err == nil {
		p.partial[side] = keepPartial(p.partial[side], rest)
	}
	werr := [2]error{l.send(p, Client), l.send(p, Backend)}
	switch {
	case verdict == End:
		l.leave(p, Result{Reason: Ended})
	case verdict == Eject:
		r := Result{Reason: Ejected}
		r.Unread[side] = append([]byte(nil), rest...)
		l.leave(p, r)
	case err != nil:
		r := Result{Reason: closedReason(side)}
		if err != io.EOF {
			r.Err = err
		}
		r.Unread[side] = append([]byte(nil), rest...)
		l.leave(p, r)
	case werr[Client] != nil:
		l.leave(p, Result{Reason: ClientClosed, Err: werr[Client]})
	case werr[Backend] != nil:
		l.leave(p, Result{Reason: BackendClosed, Err: werr[Backend]})
	}
}

// keepPartial stores the start of a message read in part.
func keepPartial(kept, rest []byte) []byte {
	if len(rest) == 0 {
		if cap(kept) > maxKeptPartial {
			return nil
		}
		return kept[:0]
	}
	return append(kept[:0], rest...)
}

// send writes what the handler produced for side; what the kernel does not
// take now stays pending in the side's socket.
func (l *Loop) send(p *Pair, side Side) error {
	b := l.out.buf[side]
	if len(b) == 0 {
		return nil
	}
	if err := p.ep[side].write(b); err != nil {
		return err
	}
	p.h.Wrote(side, len(b))
	return nil
}

// updateInterest registers what each side waits for: writable while bytes
// for it are pending, readable unless the other side's output is blocked.
func (l *Loop) updateInterest(p *Pair) {
	for side := Client; side <= Backend; side++ {
		want := uint32(0)
		if p.ep[side.other()].Socket.pendingLen() == 0 {
			want |= unix.EPOLLIN
		}
		if p.ep[side].Socket.pendingLen() > 0 {
			want |= unix.EPOLLOUT
		}
		if want == p.events[side] {
			continue
		}
		if want&^p.events[side]&unix.EPOLLIN != 0 {
			p.again[side] = true // reading resumes: what arrived meanwhile may sit in TLS buffers
		}
		p.events[side] = want
		ev := p.event(side)
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, p.fd(side), &ev); err != nil {
			l.leave(p, Result{Reason: closedReason(side), Err: errors.Wrap(err, "epoll_ctl mod")})
			return
		}
	}
}

// leave takes the pair out of the loop and hands it to then, on a new goroutine.
func (l *Loop) leave(p *Pair, r Result) {
	if p.left {
		return
	}
	p.left = true
	for side := Client; side <= p.last; side++ {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.fd(side), nil)
		if r.Unread[side] == nil && len(p.partial[side]) > 0 {
			r.Unread[side] = append([]byte(nil), p.partial[side]...)
		}
		p.partial[side] = nil
	}
	l.mu.Lock()
	l.release(p)
	l.mu.Unlock()
	go p.leftLoop(r)
}

// writeFD writes what the socket takes now.
func writeFD(fd int, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, err := rawWrite(fd, b[total:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return total, nil
		case err != nil:
			return total, errors.Wrap(err, "write")
		}
		total += n
	}
	return total, nil
}
