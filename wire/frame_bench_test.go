package wire

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkRelayFrames measures the proxy's hot path: read a frame with a
// FrameReader, write it with a FrameWriter, flush when the reader has nothing
// buffered. The input is a typical result: RowDescription, DataRows,
// CommandComplete, ReadyForQuery.
func BenchmarkRelayFrames(b *testing.B) {
	for _, tc := range []struct {
		name string
		rows int
		row  int // bytes per DataRow body
	}{
		{"small-result", 1, 16},
		{"100-rows", 100, 64},
		{"10k-rows", 10000, 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var in bytes.Buffer
			in.Write(frame('T', make([]byte, 30)))
			for i := 0; i < tc.rows; i++ {
				in.Write(frame('D', make([]byte, tc.row)))
			}
			in.Write(frame('C', []byte("SELECT 1\x00")))
			in.Write(frame('Z', []byte{'I'}))
			src := in.Bytes()
			rd := bytes.NewReader(src)
			fr := NewFrameReader(rd, 0)
			fw := NewFrameWriter(io.Discard)
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rd.Reset(src)
				for {
					typ, body, err := fr.Next()
					if err != nil {
						break
					}
					if err := fw.Write(typ, body); err != nil {
						b.Fatal(err)
					}
					if fr.Buffered() == 0 {
						_ = fw.Flush()
					}
				}
			}
		})
	}
}
