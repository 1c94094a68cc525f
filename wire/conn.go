package wire

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"

	"github.com/cockroachdb/errors"
)

// bufferedConn is a net.Conn whose reads first drain bytes already buffered
// by the startup phase.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// messageReader reads from r but never past the end of the current protocol
// message (a 5-byte header, then the body), so whoever reads r after the
// pgproto3.Backend that uses it finds the next message intact.
type messageReader struct {
	r      io.Reader
	hdr    [5]byte
	hdrN   int // header bytes read so far
	bodyN  int // body bytes still to read
	inBody bool
}

func (m *messageReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if m.inBody {
		if len(p) > m.bodyN {
			p = p[:m.bodyN]
		}
		n, err := m.r.Read(p)
		m.bodyN -= n
		if m.bodyN == 0 {
			m.inBody = false
		}
		return n, err
	}
	if len(p) > len(m.hdr)-m.hdrN {
		p = p[:len(m.hdr)-m.hdrN]
	}
	n, err := m.r.Read(p)
	copy(m.hdr[m.hdrN:], p[:n])
	m.hdrN += n
	if m.hdrN == len(m.hdr) {
		m.hdrN = 0
		// A length below 4 is an error pgproto3 reports; read no body then.
		if l := int(int32(binary.BigEndian.Uint32(m.hdr[1:]))); l > 4 {
			m.bodyN, m.inBody = l-4, true
		}
	}
	return n, err
}

// isIOError reports whether err comes from the connection rather than from
// the bytes on it.
func isIOError(err error) bool {
	var netErr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &netErr)
}
