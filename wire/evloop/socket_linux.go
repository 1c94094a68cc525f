package evloop

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
	"golang.org/x/sys/unix"
)

// Socket is a TCP or Unix connection the loop can take over and give back.
// Outside the loop it is the connection it wraps. Inside, the loop reads
// and writes its descriptor without blocking: a write the kernel does not
// take at once is kept and sent when the socket is writable, so a TLS
// connection over a Socket never sees a short write. Close works in both
// states: inside the loop it makes the pair leave.
type Socket struct {
	local, remote net.Addr

	mu      sync.Mutex
	conn    net.Conn // the Go runtime's connection; nil while the loop has the socket
	fd      int      // the loop's descriptor
	pending []byte   // written inside the loop, not yet taken by the kernel
	closed  bool
	kick    func() // makes the pair leave the loop
}

// errWouldBlock is what a Socket inside the loop returns for a read that
// would wait. It is a temporary net.Error, so a TLS connection over the
// socket keeps its state and can be read again.
var errWouldBlock = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "evloop: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// NewSocket wraps a TCP or Unix connection so the loop can take it; any
// other connection is returned as it is.
func NewSocket(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return &Socket{conn: c, fd: -1, local: c.LocalAddr(), remote: c.RemoteAddr()}
	}
	return c
}

func (s *Socket) runtimeConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Read reads from the connection; inside the loop it does not block.
func (s *Socket) Read(b []byte) (int, error) {
	if c := s.runtimeConn(); c != nil {
		return c.Read(b)
	}
	for {
		n, err := rawRead(s.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, errors.Wrap(err, "read")
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes to the connection; inside the loop it takes every byte,
// keeping what the kernel does not take yet.
func (s *Socket) Write(b []byte) (int, error) {
	if c := s.runtimeConn(); c != nil {
		return c.Write(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	if len(s.pending) > 0 {
		s.pending = append(s.pending, b...)
		return len(b), nil
	}
	n, err := writeFD(s.fd, b)
	if err != nil {
		return n, err
	}
	if n < len(b) {
		s.pending = append(s.pending, b[n:]...)
	}
	return len(b), nil
}

// pendingLen says how many written bytes the kernel has not taken yet.
func (s *Socket) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// flush writes what is pending, as far as the kernel takes it.
func (s *Socket) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := writeFD(s.fd, s.pending)
	rest := copy(s.pending, s.pending[n:])
	s.pending = s.pending[:rest]
	if rest == 0 && cap(s.pending) > maxKeptPartial {
		s.pending = nil
	}
	return err
}

func (s *Socket) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close closes the connection, or inside the loop makes its pair leave (the
// connection closes when it is given back).
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c, kick := s.conn, s.kick
	s.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	if kick != nil {
		kick()
	}
	return nil
}

// SyscallConn gives access to the descriptor outside the loop (the pool
// peeks at idle backend sockets through it).
func (s *Socket) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := s.runtimeConn().(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("evloop: the socket is inside the loop")
}

func (s *Socket) LocalAddr() net.Addr  { return s.local }
func (s *Socket) RemoteAddr() net.Addr { return s.remote }

// The deadlines apply outside the loop; inside, nothing blocks.
func (s *Socket) SetDeadline(t time.Time) error {
	if c := s.runtimeConn(); c != nil {
		return c.SetDeadline(t)
	}
	return nil
}

func (s *Socket) SetReadDeadline(t time.Time) error {
	if c := s.runtimeConn(); c != nil {
		return c.SetReadDeadline(t)
	}
	return nil
}

func (s *Socket) SetWriteDeadline(t time.Time) error {
	if c := s.runtimeConn(); c != nil {
		return c.SetWriteDeadline(t)
	}
	return nil
}

// detach takes the socket from the Go runtime: a non-blocking duplicate of
// its descriptor serves the loop, and the runtime's connection closes (the
// socket stays open through the duplicate).
func (s *Socket) detach(kick func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.conn == nil {
		return net.ErrClosed
	}
	sc, ok := s.conn.(syscall.Conn)
	if !ok {
		return errors.New("evloop: not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return errors.Wrap(err, "detach")
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return errors.Wrap(err, "detach")
	}
	if dupErr != nil {
		return errors.Wrap(dupErr, "detach: dup")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return errors.Wrap(err, "detach")
	}
	s.conn.Close()
	s.conn, s.fd, s.kick = nil, fd, kick
	return nil
}

// attach gives the socket back to the Go runtime and writes what is still
// pending (blocking, up to a deadline). A socket closed meanwhile is closed
// now. It reports whether every pending byte was written.
func (s *Socket) attach() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := os.NewFile(uintptr(s.fd), "evloop")
	c, err := net.FileConn(f)
	f.Close()
	s.fd, s.kick = -1, nil
	pending := s.pending
	s.pending = nil
	if err != nil {
		s.conn, s.closed = closedConn{local: s.local, remote: s.remote}, true
		return len(pending) == 0
	}
	s.conn = c
	if s.closed {
		c.Close()
		return len(pending) == 0
	}
	if len(pending) > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write(pending)
		_ = c.SetWriteDeadline(time.Time{})
		return err == nil
	}
	return true
}

// closedConn stands in for a connection that could not be given back.
type closedConn struct{ local, remote net.Addr }

func (closedConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (closedConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (closedConn) Close() error                     { return nil }
func (c closedConn) LocalAddr() net.Addr            { return c.local }
func (c closedConn) RemoteAddr() net.Addr           { return c.remote }
func (closedConn) SetDeadline(time.Time) error      { return nil }
func (closedConn) SetReadDeadline(time.Time) error  { return nil }
func (closedConn) SetWriteDeadline(time.Time) error { return nil }
