package querylog

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzAppendLine checks that a log line holds what a client sent (its
// statement, database and tenant names) byte for byte as encoding/json
// writes it, so no text can end the line or forge a field, and that
// Truncate cuts a statement to a prefix of at most MaxStatement bytes
// without splitting a character.
func FuzzAppendLine(f *testing.F) {
	f.Add("SELECT 1", "myapp__wayne", "wayne", 1.5, int64(1), int64(1764165906789000000), int16(0))
	f.Add("a\nb\"c\\d<e>&\u2028\xff\xc3", "x\x00y", "", 1e-7, int64(-3), int64(0), int16(-330))
	f.Add(strings.Repeat("é", 3000), "", "t", 2.5e22, int64(math.MaxInt64), int64(-1), int16(23*60))
	f.Fuzz(func(t *testing.T, stmt, database, tenant string, ms float64, rows, ns int64, offset int16) {
		if math.IsNaN(ms) || math.IsInf(ms, 0) {
			return // encoding/json refuses them; a duration never is one
		}
		off := int(offset) % (24 * 60)
		at := time.Unix(0, ns).In(time.FixedZone("", off*60))
		e := Entry{
			Time: at, Node: "n1", Project: "tdb_1", Database: database, Workspace: "myapp", Tenant: tenant,
			KeyID: "k1", Role: "admin", ClientIP: "192.0.2.1", Statement: stmt, DurationMs: ms, Rows: rows, SQLState: "00000",
		}
		e.Statement, e.Truncated = Truncate(stmt)
		if got, want := appendLine(nil, &e), jsonLine(t, e); !bytes.Equal(got, want) {
			t.Fatalf("entry %+v:\n got %s\nwant %s", e, got, want)
		}
		if !strings.HasPrefix(stmt, e.Statement) || len(e.Statement) > MaxStatement || e.Truncated != (len(stmt) > MaxStatement) {
			t.Fatalf("Truncate(%d bytes) = %d bytes, %v", len(stmt), len(e.Statement), e.Truncated)
		}
		if utf8.ValidString(stmt) && (!utf8.ValidString(e.Statement) || e.Truncated && len(e.Statement) <= MaxStatement-utf8.UTFMax) {
			t.Fatalf("Truncate of valid UTF-8 split a character or cut more than one: %d of %d bytes kept", len(e.Statement), len(stmt))
		}
	})
}
