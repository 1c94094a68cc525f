package actors

import (
	"bytes"
	"io"
	"net"
	"time"

	"tdb/wire"
	"tdb/wire/evloop"
)

// The event-loop relay: a session whose client and backend are plain
// sockets is relayed from the proxy's epoll loop (package wire/evloop)
// instead of by a goroutine per direction, with the same synchronous cores
// (fromClient, fromBackend). What would block on the loop's thread (a
// proxy-initiated cancel still on its way, a captured DDL version to commit
// through raft, a message larger than the loop's buffer) hands the session
// back to the goroutine relay at that message.

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
		if s.gov.cancelPending() {
			return evloop.Eject // the goroutine relay waits for it
		}
		body, step, err := s.fromClient(typ, body)
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
		}
		out.Message(evloop.Backend, typ, body)
		return evloop.Continue
	}
	if typ == wire.MsgReadyForQuery && s.captures() && s.ddlPending() {
		return evloop.Eject // recording the version commits through raft
	}
	act, body, _ := s.fromBackend(typ, body)
	if len(act.out) > 0 {
		out.Raw(evloop.Client, act.out)
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

// ddlPending reports whether DDL may have committed by the next
// ReadyForQuery (capture records it then).
func (s *session) ddlPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.track.committed) > 0 || len(s.track.txDDL) > 0
}

// relayInLoop relays the session from the proxy's event loop, if its
// sockets allow it. ok is false, with nothing changed, when they do not (a
// TLS client, a PROXY protocol connection). Afterwards s.client and the
// backend connection are ordinary connections again.
func (s *session) relayInLoop(loop *evloop.Loop, fr *wire.FrameReader) (end loopEnd, ok bool) {
	raw, counted := s.client, (*countingConn)(nil)
	if cc, isCounted := raw.(*countingConn); isCounted {
		raw, counted = cc.Conn, cc
	}
	if !detachable(raw) || !detachable(s.bc.Conn) {
		return loopEnd{}, false
	}
	unread := [2][]byte{fr.Drain(), s.bc.Reader.Drain()}
	clientFD, _, err := evloop.Detach(raw)
	if err != nil {
		s.unreadAll(fr, unread)
		return loopEnd{}, false
	}
	backendFD, _, err := evloop.Detach(s.bc.Conn)
	if err != nil {
		s.reattach(clientFD, -1, counted)
		s.unreadAll(fr, unread)
		return loopEnd{}, false
	}
	h := &loopHandler{s: s, counted: counted}
	pair, err := loop.Relay(clientFD, backendFD, h, unread)
	if err != nil {
		s.proxy.cfg.Logf("proxy: event loop: %v", err)
		s.reattach(clientFD, backendFD, counted)
		s.unreadAll(fr, unread)
		return loopEnd{}, false
	}
	s.proxy.cfg.Policy.metrics().Relay("loop")
	s.pair.Store(pair)
	res := pair.Wait()
	s.pair.Store(nil)
	s.reattach(clientFD, backendFD, counted)
	return loopEnd{res: res, terminated: h.terminated, failed: h.failed}, true
}

// detachable reports whether the event loop can take c.
func detachable(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return evloop.Supported()
	}
	return false
}

// unreadAll puts bytes taken for the loop back in front of their readers.
func (s *session) unreadAll(fr *wire.FrameReader, unread [2][]byte) {
	fr.Reset(prefixed(unread[evloop.Client], s.client))
	s.bc.Reader.Reset(prefixed(unread[evloop.Backend], s.bc.Conn))
}

// prefixed reads b, then r.
func prefixed(b []byte, r io.Reader) io.Reader {
	if len(b) == 0 {
		return r
	}
	return io.MultiReader(bytes.NewReader(b), r)
}

// reattach gives descriptors back to the Go runtime as the session's client
// and backend connections. A descriptor that cannot be attached leaves a
// closed connection in its place, so the session ends as if it had failed.
func (s *session) reattach(clientFD, backendFD int, counted *countingConn) {
	if clientFD >= 0 {
		c, err := evloop.Attach(clientFD)
		if err != nil {
			s.proxy.cfg.Logf("proxy: event loop: client: %v", err)
			c = closedConn()
		}
		s.proxy.retrack(s.raw, c)
		s.mu.Lock()
		s.raw = c
		s.mu.Unlock()
		s.client = c
		if counted != nil {
			s.client = &countingConn{Conn: c, read: counted.read, written: counted.written}
		}
	}
	if backendFD >= 0 {
		c, err := evloop.Attach(backendFD)
		if err != nil {
			s.proxy.cfg.Logf("proxy: event loop: backend: %v", err)
			c = closedConn()
		}
		s.bc.Conn = c
		s.bc.Reader.Reset(c)
	}
}

// closedConn is a connection whose every call fails: it stands in for one
// that could not be given back.
func closedConn() net.Conn {
	a, b := net.Pipe()
	a.Close()
	b.Close()
	return a
}

// resumeAfterLoop carries a session the loop ejected over to the goroutine
// relay: first what the loop had not written, then the unread bytes in
// front of each reader. It returns the client's reader, or false when a
// connection failed on the way.
func (s *session) resumeAfterLoop(end loopEnd) (*wire.FrameReader, bool) {
	if !s.writeUnwritten(end.res) {
		return nil, false
	}
	fr := wire.NewFrameReader(prefixed(end.res.Unread[evloop.Client], s.client), 0)
	s.bc.Reader.Reset(prefixed(end.res.Unread[evloop.Backend], s.bc.Conn))
	return fr, true
}

// writeUnwritten writes what the loop had buffered for each side.
func (s *session) writeUnwritten(res evloop.Result) bool {
	ok := true
	for side, c := range [2]net.Conn{s.client, s.bc.Conn} {
		if b := res.Unwritten[side]; len(b) > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(b); err != nil {
				ok = false
			}
			_ = c.SetWriteDeadline(time.Time{})
		}
	}
	return ok
}

// afterLoop ends a session the loop is done with, as the goroutine relay
// would: it reports whether the client went away without Terminate, and
// whether the backend's stream is still whole (nothing left unread).
func (s *session) afterLoop(end loopEnd) (clientGone, backendWhole bool) {
	res := end.res
	wrote := s.writeUnwritten(res)
	backendWhole = len(res.Unread[evloop.Backend]) == 0 && len(res.Unwritten[evloop.Backend]) == 0
	switch res.Reason {
	case evloop.Ended:
		if !wrote {
			backendWhole = false
		}
		return !end.terminated, backendWhole
	case evloop.BackendClosed:
		s.backendLost()
		return true, false
	default: // ClientClosed, Kicked
		return true, backendWhole
	}
}

// drop ends the client connection (idle timeout): the event loop lets the
// session go, or the connection closes under the goroutine relay.
func (s *session) drop() {
	if pair := s.pair.Load(); pair != nil {
		pair.Kick()
	}
	s.mu.Lock()
	raw := s.raw
	s.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
}
