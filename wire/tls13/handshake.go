package tls13

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
)

// Server runs a server handshake on conn with a per-connection copy of cfg,
// and returns the connection to use after it: a *Conn for a TLS 1.3 session,
// the *tls.Conn otherwise (its NetConn is then a
// wrapper of conn, with a NetConn method of its own). On error the
// *tls.Conn is returned, for an error message or a close.
func Server(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, tls.ConnectionState, error) {
	return ServerAfter(ctx, conn, nil, cfg)
}

// ServerAfter is Server for a connection whose first bytes were already
// read from conn (a direct TLS connection, recognised by its first byte):
// the handshake reads read first. The connection returned reads conn alone,
// as Server's does: every byte of read precedes the client's Finished.
func ServerAfter(ctx context.Context, conn net.Conn, read []byte, cfg *tls.Config) (net.Conn, tls.ConnectionState, error) {
	keys := &keyLog{next: cfg.KeyLogWriter}
	c := cfg.Clone()
	c.KeyLogWriter = keys
	// A ticket would be the first record under the server's traffic secret;
	// without one, nothing is.
	c.SessionTicketsDisabled = true
	r := &recordReader{Conn: conn}
	var pre *prefixConn
	if len(read) > 0 {
		pre = &prefixConn{Conn: conn, read: read}
		r.Conn = pre
	}
	tc := tls.Server(r, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tc, tls.ConnectionState{}, err
	}
	r.through = true
	if pre != nil {
		if len(pre.read) > 0 {
			// Cannot happen (the client sent those bytes before it saw the
			// server's first flight), but they must not be lost.
			return tc, tc.ConnectionState(), nil
		}
		r.Conn = conn // a crypto/tls session reads the socket itself again
	}
	state := tc.ConnectionState()
	if !r.atBoundary() || keys.client == nil || keys.server == nil {
		return tc, state, nil
	}
	rc, err := newConn(conn, state.Version, state.CipherSuite, keys.client, keys.server)
	if err != nil {
		return tc, state, nil // another suite or version: crypto/tls carries on
	}
	return rc, state, nil
}

// keyLog takes the application traffic secrets from the key log lines
// crypto/tls writes during the handshake (and passes the lines on to the
// configuration's own KeyLogWriter, when it has one).
type keyLog struct {
	next           io.Writer
	client, server []byte
}

func (k *keyLog) Write(line []byte) (int, error) {
	if k.next != nil {
		if _, err := k.next.Write(line); err != nil {
			return 0, err
		}
	}
	f := bytes.Fields(line)
	if len(f) != 3 {
		return len(line), nil
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.server
	default:
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return 0, err
	}
	*dst = secret
	return len(line), nil
}

// recordReader hands crypto/tls the handshake one record at a time, so
// that when the handshake ends nothing past the client's Finished has been
// read. After the handshake, reads go straight through.
type recordReader struct {
	net.Conn
	hdr     [headerLen]byte
	nh      int // bytes of the next record's header read
	left    int // bytes of the current record's body not yet read
	through bool
}

func (r *recordReader) Read(b []byte) (int, error) {
	if r.through || len(b) == 0 {
		return r.Conn.Read(b)
	}
	if r.left == 0 {
		b = b[:min(len(b), headerLen-r.nh)]
		n, err := r.Conn.Read(b)
		copy(r.hdr[r.nh:], b[:n])
		r.nh += n
		if r.nh == headerLen {
			r.left = int(binary.BigEndian.Uint16(r.hdr[3:]))
			r.nh = 0
		}
		return n, err
	}
	n, err := r.Conn.Read(b[:min(len(b), r.left)])
	r.left -= n
	return n, err
}

// atBoundary says whether every record begun has been read whole.
func (r *recordReader) atBoundary() bool { return r.nh == 0 && r.left == 0 }

// NetConn returns the connection underneath.
func (r *recordReader) NetConn() net.Conn { return r.Conn }

// prefixConn reads bytes already read from its connection before the
// connection's own.
type prefixConn struct {
	net.Conn
	read []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.read) == 0 {
		return p.Conn.Read(b)
	}
	n := copy(b, p.read)
	if p.read = p.read[n:]; len(p.read) == 0 {
		p.read = nil // let go of the buffer they were in
	}
	return n, nil
}
