package wire

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/errors"
)

func frame(typ byte, body []byte) []byte {
	b := append([]byte{typ}, binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))...)
	return append(b, body...)
}

func TestFrameReader(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3*maxRetainedFrame)
	tests := []struct {
		name     string
		in       []byte
		maxFrame int
		want     []string // type byte + body per frame
		wantErr  error    // after the frames; io.EOF for a clean end
		wantCode string
	}{
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "frames", in: append(append(frame('Q', []byte("SELECT 1\x00")), frame('S', nil)...), frame('X', nil)...),
			want: []string{"QSELECT 1\x00", "S", "X"}, wantErr: io.EOF},
		{name: "large frame", in: frame('D', big), want: []string{"D" + string(big)}, wantErr: io.EOF},
		{name: "truncated header", in: []byte{'Q', 0, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated body", in: frame('Q', []byte("SELECT 1\x00"))[:8], wantErr: io.ErrUnexpectedEOF},
		{name: "length below 4", in: []byte{'Q', 0, 0, 0, 3}, wantCode: CodeProtocolViolation},
		{name: "negative length", in: []byte{'Q', 0x80, 0, 0, 0}, wantCode: CodeProtocolViolation},
		{name: "too large", in: frame('Q', []byte("0123456789")), maxFrame: 9, wantCode: CodeProtocolViolation},
		{name: "at the limit", in: frame('Q', []byte("012345678")), maxFrame: 9, want: []string{"Q012345678"}, wantErr: io.EOF},
		{name: "default limit", in: []byte{'D', 0x40, 0, 0, 4}, wantErr: io.ErrUnexpectedEOF /* 1 GiB allowed, but not sent */},
		{name: "beyond default limit", in: []byte{'D', 0x40, 0, 0, 5}, wantCode: CodeProtocolViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewFrameReader(bytes.NewReader(tt.in), tt.maxFrame)
			var got []string
			var err error
			for {
				var typ byte
				var body []byte
				if typ, body, err = r.Next(); err != nil {
					break
				}
				got = append(got, string(typ)+string(body))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("frames = %.80q, want %.80q", got, tt.want)
			}
			if tt.wantCode != "" {
				if pe, ok := AsPGError(err); !ok || pe.Code != tt.wantCode {
					t.Fatalf("err = %v, want %s", err, tt.wantCode)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFrameReaderReusesBuffer(t *testing.T) {
	in := bytes.Repeat(frame('D', make([]byte, 100)), 2000)
	r := NewFrameReader(bytes.NewReader(in), 0)
	allocs := testing.AllocsPerRun(1, func() {
		for i := 0; i < 999; i++ {
			if _, _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 2 {
		t.Fatalf("%v allocations for 999 frames", allocs)
	}
}

// countingWriter records each Write call.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

func TestFrameWriter(t *testing.T) {
	tests := []struct {
		name       string
		write      func(w *FrameWriter)
		wantWrites int
		want       []byte
	}{
		{name: "coalesced", write: func(w *FrameWriter) {
			_ = w.Write('C', []byte("SELECT 1\x00"))
			_ = w.WriteRaw(AppendReadyForQuery(nil, 'I'))
		}, wantWrites: 1, want: append(frame('C', []byte("SELECT 1\x00")), frame('Z', []byte("I"))...)},
		{name: "large body written through", write: func(w *FrameWriter) {
			_ = w.Write('D', bytes.Repeat([]byte("y"), 2*DefaultFlushThreshold))
			_ = w.Write('C', []byte("x\x00"))
		}, wantWrites: 3, want: append(frame('D', bytes.Repeat([]byte("y"), 2*DefaultFlushThreshold)), frame('C', []byte("x\x00"))...)},
		{name: "threshold flushes", write: func(w *FrameWriter) {
			for i := 0; i < 3; i++ {
				_ = w.Write('D', bytes.Repeat([]byte("z"), DefaultFlushThreshold/2))
			}
		}, wantWrites: 3, want: bytes.Repeat(frame('D', bytes.Repeat([]byte("z"), DefaultFlushThreshold/2)), 3)},
		{name: "nothing", write: func(*FrameWriter) {}, wantWrites: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out countingWriter
			w := NewFrameWriter(&out)
			tt.write(w)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if out.writes != tt.wantWrites || !bytes.Equal(out.Bytes(), tt.want) || w.Buffered() != 0 {
				t.Fatalf("%d writes of %d bytes, want %d writes of %d bytes", out.writes, out.Len(), tt.wantWrites, len(tt.want))
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestFrameWriterStickyError(t *testing.T) {
	w := NewFrameWriter(failingWriter{})
	_ = w.Write('Z', []byte("I"))
	if err := w.Flush(); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Flush = %v", err)
	}
	if err := w.Write('Z', []byte("I")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Write after error = %v", err)
	}
}

func FuzzFrameReader(f *testing.F) {
	f.Add(append(frame('Q', []byte("SELECT 1\x00")), frame('Z', []byte("I"))...))
	f.Add(frame('P', []byte("s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17")))
	f.Add(frame('E', []byte("SERROR\x00VERROR\x00C42501\x00Mdenied\x00\x00")))
	f.Add(frame('K', []byte("\x00\x00\x00\x01\x00\x00\x00\x02")))
	f.Add([]byte{'D', 0x7f, 0xff, 0xff, 0xff, 1, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewFrameReader(bytes.NewReader(in), 1<<16)
		var out bytes.Buffer
		w := NewFrameWriter(&out)
		for {
			typ, body, err := r.Next()
			if err != nil {
				break
			}
			_, _ = QueryText(body)
			_, _, _ = ParseText(body)
			_, _ = ParseCommandComplete(body)
			_, _ = ParseReadyForQuery(body)
			_, _, _, _ = ParseErrorFields(body)
			_, _ = ParseBackendKeyData(body)
			if err := w.Write(typ, body); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		// What was read and rewritten is exactly a prefix of the input.
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("rewritten frames are not a prefix of the input")
		}
	})
}

// chunkReader returns at most the next size in sizes bytes per Read, cycling.
type chunkReader struct {
	r     io.Reader
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	n := min(len(p), c.sizes[c.i%len(c.sizes)])
	c.i++
	return c.r.Read(p[:n])
}

// TestFrameReaderChunked: messages of every size class (inline buffer,
// shared buffer, larger than both) read back intact whatever the chunking
// of the stream, and the writer rewrites the stream byte for byte.
func TestFrameReaderChunked(t *testing.T) {
	var in []byte
	var want [][]byte
	for i, n := range []int{0, 1, 5, 100, smallBufferSize - 5, smallBufferSize, smallBufferSize + 1, 4000,
		frameReaderBufferSize - 5, frameReaderBufferSize, frameReaderBufferSize + 1, 3 * frameReaderBufferSize, 7, DefaultFlushThreshold + 3, 2} {
		body := bytes.Repeat([]byte{byte('a' + i)}, n)
		in = append(in, frame('D', body)...)
		want = append(want, body)
	}
	for _, sizes := range [][]int{{1 << 30}, {1}, {3, 700, 5}, {smallBufferSize}, {frameReaderBufferSize + 7, 1}} {
		r := NewFrameReader(&chunkReader{r: bytes.NewReader(in), sizes: sizes}, 0)
		var out bytes.Buffer
		w := NewFrameWriter(&out)
		for i, wb := range want {
			typ, body, err := r.Next()
			if err != nil {
				t.Fatalf("chunks %v: frame %d: %v", sizes, i, err)
			}
			if typ != 'D' || !bytes.Equal(body, wb) {
				t.Fatalf("chunks %v: frame %d: got %c with %d bytes, want %d", sizes, i, typ, len(body), len(wb))
			}
			if err := w.Write(typ, body); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("chunks %v: after the last frame: %v, want io.EOF", sizes, err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("chunks %v: the writer did not reproduce the stream", sizes)
		}
	}
}

// TestFrameBuffersReleasedWhenIdle: after a bulk transfer a reader and a
// writer hold only their inline buffers once the traffic is small again, so
// an idle connection does not keep 100 KiB of buffers.
func TestFrameBuffersReleasedWhenIdle(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewFrameReader(pr, 0)
	w := NewFrameWriter(io.Discard)
	go func() {
		// A bulk result, written in one piece, then a small round trip.
		var bulk []byte
		for range 200 {
			bulk = append(bulk, frame('D', bytes.Repeat([]byte("r"), 500))...)
		}
		_, _ = pw.Write(bulk)
		_, _ = pw.Write(frame('Z', []byte("I")))
		_, _ = pw.Write(frame('Z', []byte("I")))
	}()
	for i := range 200 {
		typ, body, err := r.Next()
		if err != nil || typ != 'D' {
			t.Fatalf("row %d: %c %v", i, typ, err)
		}
		if err := w.Write(typ, body); err != nil {
			t.Fatal(err)
		}
		if i == 100 && r.big == nil {
			t.Fatal("the reader read a bulk result without its large buffer")
		}
	}
	if w.big == nil {
		t.Fatal("the writer batched 100 KiB without its large buffer")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if typ, _, err := r.Next(); err != nil || typ != 'Z' {
			t.Fatalf("%c %v", typ, err)
		}
	}
	if r.big != nil || r.body != nil {
		t.Fatal("the reader kept its large buffers after the traffic became small")
	}
	if w.big != nil || cap(w.buf) != smallBufferSize {
		t.Fatal("the writer kept its large buffer after a flush")
	}
}

func TestFrameReaderPeek(t *testing.T) {
	r := NewFrameReader(bytes.NewReader(append(frame('Q', []byte("SELECT 1\x00")), frame('X', nil)...)), 0)
	for _, want := range []byte{'Q', 'X'} {
		typ, err := r.Peek()
		if err != nil || typ != want {
			t.Fatalf("Peek = %c %v, want %c", typ, err, want)
		}
		if typ, _, err := r.Next(); err != nil || typ != want {
			t.Fatalf("Next after Peek = %c %v, want %c", typ, err, want)
		}
	}
	if _, err := r.Peek(); err != io.EOF {
		t.Fatalf("Peek at the end = %v, want io.EOF", err)
	}
}

// TestFrameReaderReleasesItsBuffers: a reader holds no buffer until it
// reads, and gives its buffers back on Drain and on Release once nothing is
// left unread (a connection the event loop relays, or one waiting in a
// pool, costs no read buffer); it reads on afterwards.
func TestFrameReaderReleasesItsBuffers(t *testing.T) {
	var in bytes.Buffer
	r := NewFrameReader(&in, 0)
	if r.buf != nil || r.small != nil {
		t.Fatal("a new reader holds a buffer")
	}
	in.Write(frame('Z', []byte("I")))
	in.Write(frame('C', []byte("SELECT 1\x00")))
	if typ, _, err := r.Next(); err != nil || typ != 'Z' {
		t.Fatalf("%c %v", typ, err)
	}
	r.Release() // 'C' is buffered: nothing may go
	if r.small == nil || r.Buffered() == 0 {
		t.Fatal("Release dropped unread bytes")
	}
	if got := r.Drain(); !bytes.Equal(got, frame('C', []byte("SELECT 1\x00"))) {
		t.Fatalf("Drain = %q", got)
	}
	if r.buf != nil || r.small != nil || r.big != nil {
		t.Fatal("the reader kept a buffer after Drain")
	}
	in.Write(bytes.Repeat(frame('D', bytes.Repeat([]byte("r"), 500)), 100))
	for i := range 100 {
		if typ, body, err := r.Next(); err != nil || typ != 'D' || len(body) != 500 {
			t.Fatalf("row %d after Drain: %c %d %v", i, typ, len(body), err)
		}
	}
	r.Release()
	if r.buf != nil || r.small != nil || r.big != nil {
		t.Fatal("the reader kept a buffer after Release")
	}
	in.Write(frame('Z', []byte("T")))
	if typ, body, err := r.Next(); err != nil || typ != 'Z' || string(body) != "T" {
		t.Fatalf("after Release: %c %q %v", typ, body, err)
	}
}

// cutReader returns its chunks one read at a time, then a timeout, as a
// connection whose read deadline passed mid-message.
type cutReader struct{ chunks [][]byte }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (r *cutReader) Read(b []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, timeoutError{}
	}
	n := copy(b, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// A read cut short by a deadline loses nothing: Drain returns every byte
// that arrived, a whole message before it included, so another reader (the
// event loop) can go on from there.
func TestFrameReaderCutKeepsBytes(t *testing.T) {
	whole := AppendQuery(nil, "SELECT 1")
	for _, size := range []int{3, 100, frameReaderBufferSize - 10, frameReaderBufferSize + 5000, 200 << 10} {
		msg := append([]byte{'d', 0, 0, 0, 0}, bytes.Repeat([]byte{'x'}, size)...)
		binary.BigEndian.PutUint32(msg[1:], uint32(size+4))
		for _, cut := range []int{0, 2, 5, 6, len(msg) / 2, len(msg) - 1} {
			stream := append(append([]byte(nil), whole...), msg[:cut]...)
			// Delivered in pieces, as reads return them.
			var chunks [][]byte
			for rest := stream; len(rest) > 0; {
				n := min(len(rest), 7000)
				chunks = append(chunks, rest[:n])
				rest = rest[n:]
			}
			fr := NewFrameReader(&cutReader{chunks: chunks}, 0)
			typ, _, err := fr.Next()
			if err != nil || typ != 'Q' {
				t.Fatalf("size %d cut %d: first message %q %v", size, cut, typ, err)
			}
			if _, _, err := fr.Next(); err == nil {
				t.Fatalf("size %d cut %d: a cut message was returned", size, cut)
			}
			if got := fr.Drain(); !bytes.Equal(got, msg[:cut]) {
				t.Fatalf("size %d cut %d: Drain returned %d bytes, want the %d that arrived", size, cut, len(got), cut)
			}
			if got := fr.Drain(); len(got) != 0 {
				t.Fatalf("size %d cut %d: a second Drain returned %d bytes", size, cut, len(got))
			}
		}
	}
}

// TestFrameReaderReadMore: ReadMore adds what arrives behind the buffered
// bytes without moving them, so the last message's body stays valid, and
// Next returns the messages it read.
func TestFrameReaderReadMore(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewFrameReader(pr, 0)
	go pw.Write(frame('Q', []byte("SELECT 1\x00")))
	typ, body, err := r.Next()
	if err != nil || typ != 'Q' {
		t.Fatalf("Next = %c %v", typ, err)
	}
	room := r.Room()
	if room == 0 {
		t.Fatal("no room after a small message")
	}
	go func() {
		pw.Write(frame('P', []byte("\x00SELECT 2\x00\x00\x00")))
		pw.Close()
	}()
	if n, err := r.ReadMore(); err != nil || n == 0 {
		t.Fatalf("ReadMore = %d, %v", n, err)
	}
	if string(body) != "SELECT 1\x00" {
		t.Fatalf("the last body changed to %q", body)
	}
	if r.Room() >= room || len(r.Ahead()) == 0 {
		t.Fatalf("room %d → %d, ahead %q", room, r.Room(), r.Ahead())
	}
	if _, err := r.ReadMore(); err != io.EOF {
		t.Fatalf("ReadMore at the end = %v, want io.EOF", err)
	}
	if typ, body, err := r.Next(); err != nil || typ != 'P' || !strings.Contains(string(body), "SELECT 2") {
		t.Fatalf("Next after ReadMore = %c %q %v", typ, body, err)
	}
}

// FuzzFrameReaderAllocation: with no limit below PostgreSQL's (1 GiB), a
// message claiming any length makes the reader allocate in proportion to
// the bytes that arrived, not to the claim: a client cannot make the proxy
// reserve memory it never sends.
func FuzzFrameReaderAllocation(f *testing.F) {
	f.Add([]byte{'D', 0x3f, 0xff, 0xff, 0xff, 1, 2})
	f.Add(append([]byte{'Q', 0x20, 0, 0, 0}, make([]byte, 192563)...))
	f.Add(append(frame('Q', []byte("SELECT 1\x00")), 'd', 0x00, 0x10, 0x00, 0x04))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewFrameReader(bytes.NewReader(in), 0)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for {
			if _, _, err := r.Next(); err != nil {
				break
			}
		}
		runtime.ReadMemStats(&after)
		// The read buffers come from pools. A body larger than them grows
		// by doubling, from frameGrowStep, as its bytes arrive: the buffers
		// it went through add up to at most four times what arrived, and a
		// body cut short is copied once more for Drain. Errors carry stacks.
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(5*len(in)+4*frameGrowStep+frameReaderBufferSize+smallBufferSize+64<<10); got > limit {
			t.Fatalf("%d bytes allocated reading %d bytes (limit %d)", got, len(in), limit)
		}
	})
}
