package wire

import (
	"encoding/binary"
	"io"
	"slices"
	"sync"

	"github.com/cockroachdb/errors"
)

// Message type bytes the proxy inspects or builds. Frontend (F) and backend
// (B) types share a byte in places: the direction tells them apart.
const (
	MsgQuery            = 'Q' // F
	MsgParse            = 'P' // F
	MsgBind             = 'B' // F
	MsgExecute          = 'E' // F; B: ErrorResponse
	MsgSync             = 'S' // F; B: ParameterStatus
	MsgTerminate        = 'X' // F
	MsgCopyData         = 'd' // F and B
	MsgCopyDone         = 'c' // F and B
	MsgCopyFail         = 'f' // F
	MsgErrorResponse    = 'E' // B
	MsgNoticeResponse   = 'N' // B
	MsgCommandComplete  = 'C' // B; F: Close
	MsgDataRow          = 'D' // B; F: Describe
	MsgReadyForQuery    = 'Z' // B
	MsgParameterStatus  = 'S' // B
	MsgBackendKeyData   = 'K' // B
	MsgCopyInResponse   = 'G' // B
	MsgCopyOutResponse  = 'H' // B; F: Flush
	MsgCopyBothResponse = 'W' // B
	MsgEmptyQuery       = 'I' // B
)

const (
	// DefaultMaxFrame is the default FrameReader limit on a message body.
	// PostgreSQL has no smaller limit (a field may be 1 GiB), and the proxy adds none.
	DefaultMaxFrame = 1 << 30
	// smallBufferSize is the buffer a FrameReader or FrameWriter keeps for
	// good: enough for the round trips of an OLTP session (a query, a row,
	// CommandComplete, ReadyForQuery), small enough that an idle connection
	// costs little.
	smallBufferSize = 1 << 10
	// frameReaderBufferSize is the read buffer a FrameReader borrows from a
	// shared pool while data arrives in bulk; it is returned once the reader
	// has drained it and the reads have become small again.
	frameReaderBufferSize = 32 << 10
	// maxRetainedFrame is the largest body buffer a FrameReader keeps between
	// calls (for messages larger than its read buffer); a larger one is
	// released at the next call, and any one once the reader goes idle.
	maxRetainedFrame = 1 << 20
	// frameGrowStep is the least a body buffer grows by while a large body arrives.
	frameGrowStep = 64 << 10
	// DefaultFlushThreshold is how many bytes a FrameWriter buffers before
	// writing on its own, which keeps its memory flat on long results.
	DefaultFlushThreshold = 64 << 10
)

// Shared large buffers. A connection holds one only while bytes flow in
// bulk, so the memory of idle connections is their small inline buffers.
var (
	readBufferPool  = sync.Pool{New: func() any { return new([frameReaderBufferSize]byte) }}
	smallReadPool   = sync.Pool{New: func() any { return new([smallBufferSize]byte) }}
	writeBufferPool = sync.Pool{New: func() any { return new([DefaultFlushThreshold]byte) }}
)

// FrameReader reads raw protocol messages (type byte, int32 length, body)
// for the relay. A body is a view of its read buffer where the message fits
// (no copy); it is valid until the next call.
type FrameReader struct {
	r        io.Reader
	maxFrame int

	buf        []byte // small[:], big[:], or nil while the reader holds no buffer
	rpos, wpos int    // unread bytes are buf[rpos:wpos]
	lastRead   int    // bytes the last read returned
	filled     bool   // the last read filled all the space it was offered
	big        *[frameReaderBufferSize]byte
	body       []byte // for a message larger than the read buffer
	torn       []byte // a large message a read error cut short (header and body so far)
	// small is the buffer the reader keeps while the connection is in use;
	// Drain and Release give it back, so a connection another reader serves
	// (the event loop) or that waits in a pool costs no buffer.
	small *[smallBufferSize]byte
}

// NewFrameReader reads messages from r, refusing bodies larger than maxFrame
// bytes (DefaultMaxFrame when maxFrame <= 0).
func NewFrameReader(r io.Reader, maxFrame int) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{r: r, maxFrame: maxFrame}
}

// Next returns the next message. body is valid until the next call. It
// returns io.EOF at a clean end of stream between messages. An error is
// final for Next, but what was read stays for Drain: after a read deadline
// cut a message short, Drain returns all of it that arrived.
func (f *FrameReader) Next() (typ byte, body []byte, err error) {
	if cap(f.body) > maxRetainedFrame {
		f.body = nil
	}
	f.settle()
	if err := f.fill(5); err != nil {
		if err == io.EOF && f.wpos == f.rpos {
			return 0, nil, io.EOF
		}
		return 0, nil, errors.Wrap(translateEOF(err), "read message header")
	}
	hdr := f.buf[f.rpos : f.rpos+5]
	typ = hdr[0]
	length := int64(int32(binary.BigEndian.Uint32(hdr[1:])))
	if length < 4 {
		return 0, nil, Fatalf(CodeProtocolViolation, "invalid message length %d", length)
	}
	n := length - 4
	if n > int64(f.maxFrame) {
		return 0, nil, Fatalf(CodeProtocolViolation, "message too large: %d bytes (limit %d)", n, f.maxFrame)
	}
	if int(n) <= frameReaderBufferSize-5 {
		// The whole message is read before any of it is consumed, so a
		// read that times out leaves it all for the next call or Drain.
		if err := f.fill(5 + int(n)); err != nil {
			return 0, nil, errors.Wrap(translateEOF(err), "read message body")
		}
		body = f.buf[f.rpos+5 : f.rpos+5+int(n) : f.rpos+5+int(n)]
		f.rpos += 5 + int(n)
		return typ, body, nil
	}
	var head [5]byte
	copy(head[:], hdr)
	f.rpos += 5
	body, err = f.readLarge(int(n))
	if err != nil {
		// What was read of the message stays for Drain.
		f.torn = append(append(f.torn[:0], head[:]...), body...)
		f.body = body[:0]
		return 0, nil, err
	}
	return typ, body, nil
}

// Peek waits for the next message to begin and returns its type byte
// without consuming anything.
func (f *FrameReader) Peek() (byte, error) {
	f.settle()
	if err := f.fill(1); err != nil {
		return 0, err
	}
	return f.buf[f.rpos], nil
}

// fill makes at least k (<= frameReaderBufferSize) unread bytes available,
// moving to the large buffer when the small one cannot hold them.
func (f *FrameReader) fill(k int) error {
	if f.wpos-f.rpos >= k {
		return nil
	}
	if f.buf == nil {
		f.small = smallReadPool.Get().(*[smallBufferSize]byte)
		f.buf, f.rpos, f.wpos = f.small[:], 0, 0
	}
	// A message the inline buffer cannot hold, or a last read that filled
	// it (bulk data is arriving): read into the large buffer.
	if f.big == nil && (k > len(f.buf) || f.filled) {
		f.big = readBufferPool.Get().(*[frameReaderBufferSize]byte)
		n := copy(f.big[:], f.buf[f.rpos:f.wpos])
		f.buf, f.rpos, f.wpos = f.big[:], 0, n
	}
	if len(f.buf)-f.rpos < k {
		n := copy(f.buf, f.buf[f.rpos:f.wpos])
		f.rpos, f.wpos = 0, n
	}
	for f.wpos-f.rpos < k {
		m, err := f.r.Read(f.buf[f.wpos:])
		f.filled = m == len(f.buf)-f.wpos
		f.wpos += m
		f.lastRead = m
		if err != nil {
			if f.wpos-f.rpos >= k {
				return nil
			}
			return err
		}
	}
	return nil
}

// settle runs before a read that may wait: once every read byte has been
// consumed, the buffer starts over, and a reader whose reads have become
// small again gives back its large buffers.
func (f *FrameReader) settle() {
	if f.rpos != f.wpos {
		return
	}
	f.rpos, f.wpos = 0, 0
	if f.lastRead >= smallBufferSize || f.filled {
		return
	}
	if f.big != nil {
		readBufferPool.Put(f.big)
		f.big = nil
		f.buf = f.small[:] // fill took small before big
	}
	f.body = nil
}

// readLarge reads a body larger than the read buffer into the body buffer,
// which grows as the bytes arrive, so a claimed length alone allocates little.
// On an error it returns what it read.
func (f *FrameReader) readLarge(n int) ([]byte, error) {
	b := f.body[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), max(cap(b), frameGrowStep)))
		}
		want := min(n, cap(b))
		if f.rpos < f.wpos {
			m := copy(b[len(b):want], f.buf[f.rpos:f.wpos])
			f.rpos += m
			b = b[:len(b)+m]
			continue
		}
		m, err := io.ReadFull(f.r, b[len(b):want])
		b = b[:len(b)+m]
		f.lastRead = m
		if err != nil {
			return b, errors.Wrap(translateEOF(err), "read message body")
		}
	}
	f.body = b
	return b, nil
}

// Buffered returns how many bytes are readable without blocking. The relay
// flushes its writer when this is 0.
func (f *FrameReader) Buffered() int { return f.wpos - f.rpos }

// Ahead returns the bytes read and not yet consumed, a view valid until the
// next call: what the peer sent behind the last message.
func (f *FrameReader) Ahead() []byte { return f.buf[f.rpos:f.wpos] }

// Drain returns a copy of the bytes read and not yet consumed (with the
// part of a message a read error cut, see Next), and forgets them: the
// caller reads on from the connection itself.
func (f *FrameReader) Drain() []byte {
	b := append(f.torn, f.buf[f.rpos:f.wpos]...)
	f.torn = nil
	f.rpos, f.wpos = 0, 0
	f.Release()
	return b
}

// ReadMore reads once from the connection into the free space behind the
// bytes already buffered, moving nothing: the last message's body and Ahead
// stay valid. It returns 0 and no error when there is no free space (Room).
// The relay uses it to watch a client while its message waits.
func (f *FrameReader) ReadMore() (int, error) {
	if f.Room() == 0 {
		return 0, nil
	}
	m, err := f.r.Read(f.buf[f.wpos:])
	f.wpos += m
	return m, err
}

// Room returns how many bytes ReadMore may add.
func (f *FrameReader) Room() int { return len(f.buf) - f.wpos }

// Release gives the reader's buffers back when it holds no unread bytes
// (a connection about to wait in a pool); the next read takes new ones.
func (f *FrameReader) Release() {
	if f.rpos != f.wpos {
		return
	}
	if f.big != nil {
		readBufferPool.Put(f.big)
		f.big = nil
	}
	if f.small != nil {
		smallReadPool.Put(f.small)
		f.small = nil
	}
	f.buf, f.rpos, f.wpos, f.body, f.filled, f.lastRead = nil, 0, 0, nil, false, 0
}

// Reset makes f read from r from now on, keeping what it has buffered.
func (f *FrameReader) Reset(r io.Reader) { f.r = r }

// Source returns the reader f reads from.
func (f *FrameReader) Source() io.Reader { return f.r }

func translateEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// FrameWriter coalesces messages into one buffer and writes them when
// flushed, or on its own past DefaultFlushThreshold bytes. Small batches use
// an inline buffer; larger ones borrow a shared buffer until the flush.
// After a write error every call returns that error.
type FrameWriter struct {
	w     io.Writer
	buf   []byte
	big   *[DefaultFlushThreshold]byte
	err   error
	small [smallBufferSize]byte
}

// NewFrameWriter writes messages to w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	f := &FrameWriter{w: w}
	f.buf = f.small[:0]
	return f
}

// Write appends one message with type typ and body.
func (f *FrameWriter) Write(typ byte, body []byte) error {
	if f.err != nil {
		return f.err
	}
	if err := f.reserve(min(len(body)+5, DefaultFlushThreshold)); err != nil {
		return err
	}
	f.buf = append(f.buf, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(f.buf[len(f.buf)-4:], uint32(len(body)+4))
	return f.append(body)
}

// WriteRaw appends bytes that are already whole messages, e.g. from AppendReadyForQuery.
func (f *FrameWriter) WriteRaw(frames []byte) error {
	if f.err != nil {
		return f.err
	}
	return f.append(frames)
}

// reserve makes room for n (<= DefaultFlushThreshold) more bytes, flushing
// when the batch would pass the threshold and borrowing the large buffer
// when the inline one is too small.
func (f *FrameWriter) reserve(n int) error {
	if len(f.buf)+n > DefaultFlushThreshold {
		if err := f.Flush(); err != nil {
			return err
		}
	}
	if len(f.buf)+n > cap(f.buf) {
		f.big = writeBufferPool.Get().(*[DefaultFlushThreshold]byte)
		f.buf = append(f.big[:0], f.buf...)
	}
	return nil
}

func (f *FrameWriter) append(b []byte) error {
	if len(b) <= DefaultFlushThreshold {
		if err := f.reserve(len(b)); err != nil {
			return err
		}
		f.buf = append(f.buf, b...)
		return nil
	}
	// Large: send what is buffered, then b itself without copying it.
	if err := f.Flush(); err != nil {
		return err
	}
	if _, err := f.w.Write(b); err != nil {
		f.err = errors.Wrap(err, "write messages")
	}
	return f.err
}

// Buffered returns how many bytes wait for Flush.
func (f *FrameWriter) Buffered() int { return len(f.buf) }

// Flush writes the buffered messages and gives back a borrowed buffer.
func (f *FrameWriter) Flush() error {
	if f.err != nil {
		return f.err
	}
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.w.Write(f.buf)
	f.buf = f.small[:0]
	if f.big != nil {
		writeBufferPool.Put(f.big)
		f.big = nil
	}
	if err != nil {
		f.err = errors.Wrap(err, "write messages")
	}
	return f.err
}
