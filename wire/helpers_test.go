package wire

import (
	"encoding/binary"
	"net"
	"time"
)

func packet(code uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, payload...)
}

func sslRequest() []byte    { return packet(sslRequestCode, nil) }
func gssEncRequest() []byte { return packet(gssEncRequestCode, nil) }

func cancelRequest(pid, key uint32) []byte {
	return packet(cancelRequestCode, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, pid), key))
}

// startupMessage builds a StartupMessage with name/value pairs.
func startupMessage(version uint32, kv ...string) []byte {
	var p []byte
	for _, s := range kv {
		p = append(append(p, s...), 0)
	}
	return packet(version, append(p, 0))
}

// fakeConn is a net.Conn that reads from a byte slice, at most chunk bytes
// per Read (0: all), and discards writes. For fuzzing without goroutines.
type fakeConn struct {
	in    []byte
	chunk int
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, net.ErrClosed
	}
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}
func (c *fakeConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fakeConn) Close() error                { return nil }
func (c *fakeConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432} }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
}
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
