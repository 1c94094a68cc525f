package querylog

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"testing"
	"time"
)

// jsonLine is the line as encoding/json writes it: appendLine must match it.
func jsonLine(t testing.TB, e Entry) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(struct {
		Msg string `json:"msg"`
		Entry
	}{"query", e}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAppendLineMatchesEncodingJSON(t *testing.T) {
	texts := []string{
		"", "SELECT 1", `SELECT '"quoted"' \ back`, "a\nb\rc\td\be\ff\x00g\x1fh\x7f",
		"<script>&amp;</script>", "line\u2028sep\u2029para", "bad \xff\xfe utf8 \xc3", "émoji 🚀 ok",
	}
	durations := []float64{0, 0.001, 1.5, 12.345678, 1e-7, 3.2e-9, 123456789, 1e21, 2.5e22}
	at := time.Date(2026, 11, 26, 14, 5, 6, 789000000, time.UTC)
	for i, text := range texts {
		for j, d := range durations {
			e := Entry{
				Time: at.Add(time.Duration(i*j) * time.Nanosecond), Node: "n1", Project: "tdb_1", Database: "myapp__" + text,
				Workspace: "myapp", Tenant: text, KeyID: "k1", Role: "admin", ClientIP: "127.0.0.1",
				Statement: text, Truncated: j%2 == 1, DurationMs: d, Rows: int64(i - 3), SQLState: "00000",
			}
			if got, want := appendLine(nil, &e), jsonLine(t, e); !bytes.Equal(got, want) {
				t.Fatalf("text %q duration %v:\n got %s\nwant %s", text, d, got, want)
			}
		}
	}
	// Random bytes, including invalid UTF-8.
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.Intn(40))
		rng.Read(b)
		e := Entry{Time: at, Statement: string(b), DurationMs: rng.Float64() * 1000}
		if got, want := appendLine(nil, &e), jsonLine(t, e); !bytes.Equal(got, want) {
			t.Fatalf("bytes %q:\n got %s\nwant %s", b, got, want)
		}
	}
}

func BenchmarkEncodeLine(b *testing.B) {
	e := Entry{Time: time.Now(), Node: "n1", Project: "tdb_0123456789abcdef", Database: "controlplane_workspace",
		Workspace: "controlplane", KeyID: "key_0123456789", Role: "admin", ClientIP: "127.0.0.1",
		Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", DurationMs: 0.123, Rows: 1, SQLState: "00000"}
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf.Reset()
			_ = enc.Encode(struct {
				Msg string `json:"msg"`
				Entry
			}{"query", e})
		}
	})
	b.Run("appendLine", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = appendLine(buf[:0], &e)
		}
	})
}
