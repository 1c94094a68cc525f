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

// New returns ErrUnsupported.
func New() (*Loop, error) { return nil, ErrUnsupported }

// Close does nothing.
func (l *Loop) Close() {}

// Detach reports that no connection can be detached.
func Detach(c net.Conn) (int, bool, error) { return -1, false, nil }

// Attach returns ErrUnsupported.
func Attach(fd int) (net.Conn, error) { return nil, ErrUnsupported }

// Relay returns ErrUnsupported.
func (l *Loop) Relay(client, backend int, h Handler, unread [2][]byte) (*Pair, error) {
	return nil, ErrUnsupported
}

// Wait returns at once.
func (p *Pair) Wait() Result { return Result{Reason: Kicked} }

// Kick does nothing.
func (p *Pair) Kick() {}
