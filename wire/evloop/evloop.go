package evloop

import (
	"encoding/binary"

	"github.com/cockroachdb/errors"
)

// Options configure a Loop.
type Options struct {
	// Nice is the niceness the loop's thread runs at, -20 to 19; 0 leaves
	// the process's. Where PostgreSQL shares the machine, its backends
	// compete for the CPU with the one thread that relays for all of them,
	// and a lower value lets that thread run when it has work. Going below
	// the process's niceness needs CAP_SYS_NICE or RLIMIT_NICE; without
	// them the thread keeps the process's and Loop.NiceErr says why.
	Nice int
}

// Side names one end of a relayed pair.
type Side uint8

const (
	Client Side = iota
	Backend
)

func (s Side) other() Side { return 1 - s }

func (s Side) String() string {
	if s == Client {
		return "client"
	}
	return "backend"
}

// Verdict is what a Handler decided about one message.
type Verdict uint8

const (
	// Continue: the message is handled; relaying goes on.
	Continue Verdict = iota
	// End: the message is handled and the pair is done once what is
	// buffered has been written (Terminate, a protocol error).
	End
	// Eject: the message is not handled; the pair leaves the loop with it
	// (and everything after it) unread, for the caller to handle with
	// blocking I/O.
	Eject
)

// Reason says why a pair left the loop.
type Reason uint8

const (
	Ended         Reason = iota // the handler returned End
	Ejected                     // the handler returned Eject, or a message did not fit the loop's buffer
	ClientClosed                // the client's socket ended or failed (Err says how)
	BackendClosed               // the backend's socket ended or failed (Err says how)
	Kicked                      // Kick was called, or the loop closed
)

// Result is how a pair left the loop.
type Result struct {
	Reason Reason
	Err    error // the read or write error behind ClientClosed or BackendClosed; nil at a clean end of stream
	// Unread holds, per side, bytes read from that side and not handled,
	// starting at a message boundary.
	Unread [2][]byte
	// Unflushed says, per side, that bytes written inside the loop could not
	// all be sent when the connection was given back.
	Unflushed [2]bool
}

// Handler handles the messages of one pair, on the loop's thread: it must
// not block. body is valid only during the call.
type Handler interface {
	// Message handles one whole message read from side, appending what to
	// send to out.
	Message(from Side, typ byte, body []byte, out *Out) Verdict
	// Read reports n bytes read from side (activity, byte counters).
	Read(from Side, n int)
	// Wrote reports n bytes written to side.
	Wrote(to Side, n int)
}

// Out collects what a Handler sends, per side, in order.
type Out struct {
	buf   [2][]byte
	ahead []byte
}

// Ahead returns what was read from the side of the message being handled
// behind it, not yet handled (whole messages, and maybe the start of one):
// a view valid during the Message call.
func (o *Out) Ahead() []byte { return o.ahead }

// Message appends one message (type byte, length, body) for side to.
func (o *Out) Message(to Side, typ byte, body []byte) {
	b := append(o.buf[to], typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(body)+4))
	o.buf[to] = append(b, body...)
}

// Reset empties both sides, keeping the buffers.
func (o *Out) Reset() {
	o.buf[Client], o.buf[Backend] = o.buf[Client][:0], o.buf[Backend][:0]
}

// Raw appends bytes that are already whole messages for side to.
func (o *Out) Raw(to Side, frames []byte) {
	o.buf[to] = append(o.buf[to], frames...)
}

// ErrUnsupported is returned by New where there is no epoll.
var ErrUnsupported = errors.New("evloop: not supported on this platform")

// MaxMessage is the largest message (type byte, length and body) the loop
// frames itself; a larger one ejects the pair.
const MaxMessage = readBufferSize
