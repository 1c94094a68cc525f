package wire

import (
	"bufio"
	"encoding/binary"
	"io"
	"slices"

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
	// frameReaderBufferSize is the read buffer of a FrameReader.
	frameReaderBufferSize = 32 << 10
	// maxRetainedFrame is the largest body buffer a FrameReader keeps between
	// calls; a larger one is released at the next call.
	maxRetainedFrame = 1 << 20
	// frameGrowStep is the least a body buffer grows by while a large body arrives.
	frameGrowStep = 64 << 10
	// DefaultFlushThreshold is how many bytes a FrameWriter buffers before
	// writing on its own, which keeps its memory flat on long results.
	DefaultFlushThreshold = 64 << 10
)

// FrameReader reads raw protocol messages (type byte, int32 length, body)
// for the relay. It reuses one buffer: a body is valid until the next call.
type FrameReader struct {
	br       *bufio.Reader
	maxFrame int
	hdr      [5]byte
	buf      []byte
}

// NewFrameReader reads messages from r, refusing bodies larger than maxFrame
// bytes (DefaultMaxFrame when maxFrame <= 0).
func NewFrameReader(r io.Reader, maxFrame int) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{br: bufio.NewReaderSize(r, frameReaderBufferSize), maxFrame: maxFrame}
}

// Next returns the next message. body is valid until the next call. It
// returns io.EOF at a clean end of stream between messages; any error is final.
func (f *FrameReader) Next() (typ byte, body []byte, err error) {
	if cap(f.buf) > maxRetainedFrame {
		f.buf = nil
	}
	if _, err := io.ReadFull(f.br, f.hdr[:]); err != nil {
		if err == io.EOF {
			return 0, nil, io.EOF
		}
		return 0, nil, errors.Wrap(err, "read message header")
	}
	length := int64(int32(binary.BigEndian.Uint32(f.hdr[1:])))
	if length < 4 {
		return 0, nil, Fatalf(CodeProtocolViolation, "invalid message length %d", length)
	}
	n := length - 4
	if n > int64(f.maxFrame) {
		return 0, nil, Fatalf(CodeProtocolViolation, "message too large: %d bytes (limit %d)", n, f.maxFrame)
	}
	body, err = f.readBody(int(n))
	if err != nil {
		return 0, nil, err
	}
	return f.hdr[0], body, nil
}

// readBody reads n bytes into the reused buffer. A buffer too small grows as
// the bytes arrive, so a claimed length alone allocates little.
func (f *FrameReader) readBody(n int) ([]byte, error) {
	b := f.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), max(cap(b), frameGrowStep)))
		}
		m, err := io.ReadFull(f.br, b[len(b):min(n, cap(b))])
		b = b[:len(b)+m]
		if err != nil {
			f.buf = b[:0]
			return nil, errors.Wrap(translateEOF(err), "read message body")
		}
	}
	f.buf = b
	return b, nil
}

// Buffered returns how many bytes are readable without blocking. The relay
// flushes its writer when this is 0.
func (f *FrameReader) Buffered() int { return f.br.Buffered() }

func translateEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// FrameWriter coalesces messages into one buffer and writes them when
// flushed, or on its own past DefaultFlushThreshold bytes. After a write
// error every call returns that error.
type FrameWriter struct {
	w   io.Writer
	buf []byte
	err error
}

// NewFrameWriter writes messages to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write appends one message with type typ and body.
func (f *FrameWriter) Write(typ byte, body []byte) error {
	if f.err != nil {
		return f.err
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

func (f *FrameWriter) append(b []byte) error {
	if len(f.buf)+len(b) <= DefaultFlushThreshold {
		f.buf = append(f.buf, b...)
		return nil
	}
	// Large: send what is buffered, then b itself without copying it.
	if err := f.Flush(); err != nil {
		return err
	}
	if len(b) <= DefaultFlushThreshold {
		f.buf = append(f.buf, b...)
		return nil
	}
	if _, err := f.w.Write(b); err != nil {
		f.err = errors.Wrap(err, "write messages")
	}
	return f.err
}

// Buffered returns how many bytes wait for Flush.
func (f *FrameWriter) Buffered() int { return len(f.buf) }

// Flush writes the buffered messages.
func (f *FrameWriter) Flush() error {
	if f.err != nil {
		return f.err
	}
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.w.Write(f.buf)
	f.buf = f.buf[:0]
	if err != nil {
		f.err = errors.Wrap(err, "write messages")
	}
	return f.err
}
