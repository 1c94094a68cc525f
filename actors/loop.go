package actors

import (
	"context"
	"io"
	"time"

	"tdb/wire"
	"tdb/wire/evloop"
)

// The event-loop relay: a session whose client (plain or TLS) and backend
// are sockets the proxy wrapped with evloop.NewSocket is relayed from the
// proxy's epoll loop (package wire/evloop) instead of by a goroutine per
// direction, with the same synchronous cores (fromClient, fromBackend), and
// no goroutine of the session waits meanwhile. What would block on the
// loop's thread (a proxy-initiated cancel still on its way, a captured DDL
// version to commit through raft, a message larger than the loop's buffer)
// hands the session back to the goroutine relay at that message. A lazily
// attached session waits for its first message parked in the loop.

// loopEnd is how a session's time in the loop ended.
type loopEnd struct {
	res        evloop.Result
	terminated bool // the client sent Terminate
	failed     bool // the client sent a malformed message (it was told)
}

// loopHandler is a session's evloop.Handler.
type loopHandler struct {
	s          *session
	counted    *countingConn // the byte counters, when metrics are on
	terminated bool
	failed     bool
}

func (h *loopHandler) Message(from evloop.Side, typ byte, body []byte, out *evloop.Out) evloop.Verdict {
	s := h.s
	if from == evloop.Client {
		if s.gov.cancelPending() || s.gate(typ) != nil {
			return evloop.Eject // the goroutine relay waits for it
		}
		body, step, err := s.fromClient(typ, body, out.Ahead())
		switch step {
		case stepFail:
			if buf, encErr := wire.ToErrorResponse(err).Encode(nil); encErr == nil {
				out.Raw(evloop.Client, buf)
			}
			h.failed = true
			return evloop.End
		case stepTerminate:
			h.terminated = true
			return evloop.End
		case stepWait, stepRead:
			return evloop.Eject // the goroutine relay waits for the batches in flight, or reads on
		}
		if step == stepRefuseBind {
			typ = wire.MsgParse
		}
		if p := step.prefix(); len(p) > 0 {
			out.Raw(evloop.Backend, p)
		}
		out.Message(evloop.Backend, typ, body)
		return evloop.Continue
	}
	// Sessions that capture DDL are never here (relayFrom): their batches
	// wait for the capture lock, and their versions commit through raft.
	if typ == wire.MsgReadyForQuery && s.held.Load() && len(body) == 1 && s.needsFinal(body[0]) {
		return evloop.Eject // the proxy's own statement follows (rowguard.go)
	}
	act, body, _, own := s.fromBackend(typ, body)
	if own != "" { // not reached: needsFinal handed the session over
		out.Raw(evloop.Backend, ownMessage(own))
	}
	if len(act.out) > 0 {
		out.Raw(evloop.Client, act.out)
	}
	if act.end {
		return evloop.End
	}
	if !act.drop {
		out.Message(evloop.Client, typ, body)
	}
	return evloop.Continue
}

func (h *loopHandler) Read(from evloop.Side, n int) {
	if from != evloop.Client {
		return
	}
	h.s.active.Store(time.Now().UnixNano())
	if h.counted != nil {
		h.counted.read.Add(float64(n))
	}
}

func (h *loopHandler) Wrote(to evloop.Side, n int) {
	if to == evloop.Client && h.counted != nil {
		h.counted.written.Add(float64(n))
	}
}

// clientEndpoint returns the client's connection as the loop takes it, and
// the byte counters it was wrapped in (nil when metrics are off): the loop
// counts what it reads and writes itself.
func (s *session) clientEndpoint() (evloop.Endpoint, *countingConn, bool) {
	client, counted := s.client, (*countingConn)(nil)
	if cc, ok := client.(*countingConn); ok {
		client, counted = cc.Conn, cc
	}
	ep, ok := evloop.EndpointOf(client)
	return ep, counted, ok
}

// park waits in the event loop, without a goroutine, for the first message
// of a lazily attached session (which has no backend yet); the session goes
// on from there. It reports false, with nothing changed, when the client's
// connection cannot join the loop.
func (s *session) park(ctx context.Context, then func()) bool {
	cep, counted, ok := s.clientEndpoint()
	if !ok {
		return false
	}
	err := s.loop.Park(cep, func(res evloop.Result) {
		if res.Reason == evloop.Kicked { // closed: idle timeout, shutdown
			s.client.Close()
			then()
			return
		}
		read := res.Unread[evloop.Client]
		if counted != nil {
			counted.read.Add(float64(len(read)))
		}
		s.relayFrom(ctx, wire.NewFrameReader(prefixed(read, s.client), 0), then)
	})
	return err == nil
}

// enterLoop hands the session to the proxy's event loop, if its
// connections allow it; then runs when the session is over. It reports
// false, with nothing changed, when they do not (a PROXY protocol
// connection, a TLS backend).
func (s *session) enterLoop(ctx context.Context, loop *evloop.Loop, fr *wire.FrameReader, then func(), relay string) bool {
	cep, counted, cok := s.clientEndpoint()
	bep, bok := evloop.EndpointOf(s.bc.Conn)
	if !cok || !bok {
		return false
	}
	unread := [2][]byte{drainAll(fr, s.client), drainAll(s.bc.Reader, s.bc.Conn)}
	h := &loopHandler{s: s, counted: counted}
	_, err := loop.Relay(cep, bep, h, unread, func(res evloop.Result) {
		s.afterLoop(ctx, loopEnd{res: res, terminated: h.terminated, failed: h.failed}, then)
	})
	if err != nil {
		s.proxy.cfg.Logf("proxy: event loop: %v", err)
		fr.Reset(prefixed(unread[evloop.Client], s.client))
		s.bc.Reader.Reset(prefixed(unread[evloop.Backend], s.bc.Conn))
		return false
	}
	s.proxy.cfg.Policy.metrics().Relay(relay)
	return true
}

// afterLoop goes on with a session the loop let go of: it ends it, or
// relays it with goroutines from the message the loop handed back (until
// it can go back to the loop); then runs when the session is over.
func (s *session) afterLoop(ctx context.Context, end loopEnd, then func()) {
	if end.res.Reason != evloop.Ejected {
		clientGone, whole := s.loopEnded(end)
		s.finish(ctx, clientGone, whole)
		then()
		return
	}
	s.proxy.cfg.Policy.metrics().Relay("handoff")
	fr, ok := s.resumeAfterLoop(end)
	if !ok {
		s.finish(ctx, true, false)
		then()
		return
	}
	s.mu.Lock()
	s.reloop = true
	s.mu.Unlock()
	s.relayGoroutines(ctx, fr, then)
}

// quietForLoop reports whether the goroutine relay can hand the session
// back to the loop after a ReadyForQuery, and if so marks it going back
// (backend pump, under s.mu): nothing in flight or held, and none of the
// proxy's own exchanges or cancels under way. (Sessions that capture DDL
// never came from the loop.)
func (s *session) quietForLoop() bool {
	if !s.reloop || s.inflight > 0 || s.unsynced || s.pending != nil || s.swallow.Load() != swallowNone ||
		s.guarded || s.final != "" || s.lost || s.closing.Load() || s.gov.cancelPending() {
		return false
	}
	s.backToLoop.Store(true)
	return true
}

// prefixReader reads b, then r: the bytes another reader took from a
// connection before handing it on.
type prefixReader struct {
	b []byte
	r io.Reader
}

func (p *prefixReader) Read(buf []byte) (int, error) {
	if len(p.b) == 0 {
		return p.r.Read(buf)
	}
	n := copy(buf, p.b)
	p.b = p.b[n:]
	return n, nil
}

// prefixed reads b, then r.
func prefixed(b []byte, r io.Reader) io.Reader {
	if len(b) == 0 {
		return r
	}
	return &prefixReader{b: b, r: r}
}

// drainAll returns every byte fr has taken from conn and not consumed, in
// order: what it buffered, then what is left of a prefix it reads through
// (a reader's first read takes only part of a long prefix). fr reads conn
// itself from then on.
func drainAll(fr *wire.FrameReader, conn io.Reader) []byte {
	b := fr.Drain()
	if p, ok := fr.Source().(*prefixReader); ok {
		b = append(b, p.b...)
		p.b = nil
	}
	fr.Reset(conn)
	return b
}

// resumeAfterLoop carries a session the loop ejected over to the goroutine
// relay, with the unread bytes in front of each reader. It returns the
// client's reader, or false when a connection failed on the way.
func (s *session) resumeAfterLoop(end loopEnd) (*wire.FrameReader, bool) {
	if end.res.Unflushed != [2]bool{} {
		return nil, false
	}
	fr := wire.NewFrameReader(prefixed(end.res.Unread[evloop.Client], s.client), 0)
	s.bc.Reader.Reset(prefixed(end.res.Unread[evloop.Backend], s.bc.Conn))
	return fr, true
}

// loopEnded ends a session the loop is done with, as the goroutine relay
// would: it reports whether the client went away without Terminate, and
// whether the backend's stream is still whole (nothing left unread or
// unsent).
func (s *session) loopEnded(end loopEnd) (clientGone, backendWhole bool) {
	res := end.res
	backendWhole = len(res.Unread[evloop.Backend]) == 0 && !res.Unflushed[evloop.Backend]
	switch res.Reason {
	case evloop.Ended:
		return !end.terminated, backendWhole
	case evloop.BackendClosed:
		s.backendLost()
		return true, false
	default: // ClientClosed, Kicked
		return true, backendWhole
	}
}
