package evloop

import "testing"

// A socket whose descriptor could not be given back stands closed, and
// refuses access to a descriptor instead of looking for one forever.
func TestSocketNotGivenBackStaysClosed(t *testing.T) {
	s := &Socket{fd: -1, conn: closedConn{}}
	if _, err := s.SyscallConn(); err == nil {
		t.Fatal("SyscallConn on a socket that was not given back")
	}
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read on a socket that was not given back")
	}
}
