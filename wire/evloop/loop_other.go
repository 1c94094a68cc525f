//go:build !linux

package evloop

import "net"

const readBufferSize = 64 << 10

// Supported reports whether the loop can run here.
func Supported() bool { return false }

// Loop is not available on this platform.
type Loop struct{}

// Pair is not available on this platform.
type Pair struct{}

// Socket is not available on this platform.
type Socket struct{ net.Conn }

// Endpoint is not available on this platform.
type Endpoint struct {
	Socket *Socket
	TLS    net.Conn
}

// New returns ErrUnsupported.
func New(Options) (*Loop, error) { return nil, ErrUnsupported }

// NiceErr reports nothing.
func (l *Loop) NiceErr() error { return nil }

// Close does nothing.
func (l *Loop) Close() {}

// NewSocket returns c.
func NewSocket(c net.Conn) net.Conn { return c }

// EndpointOf reports that no connection can join a loop.
func EndpointOf(c net.Conn) (Endpoint, bool) { return Endpoint{}, false }

// Relay returns ErrUnsupported.
func (l *Loop) Relay(client, backend Endpoint, h Handler, unread [2][]byte, then func(Result)) (*Pair, error) {
	return nil, ErrUnsupported
}

// Park returns ErrUnsupported.
func (l *Loop) Park(client Endpoint, then func(Result)) error { return ErrUnsupported }

// Kick does nothing.
func (p *Pair) Kick() {}
