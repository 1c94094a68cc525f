package wire

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzMessageParsers checks the body parsers against pgproto3's decoders: a
// body a parser accepts decodes the same with pgproto3 and holds nothing
// else (a parser is as strict as PostgreSQL, which refuses trailing bytes),
// and a body pgproto3 re-encodes from what it decoded is accepted.
func FuzzMessageParsers(f *testing.F) {
	f.Add([]byte("SELECT 1\x00"))
	f.Add([]byte("s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"))
	f.Add([]byte("\x00\x00\x00\x00"))
	f.Add([]byte("SERROR\x00VERROR\x00C42501\x00Mdenied\x00Dd\x00Hh\x00P3\x00\x00"))
	f.Add([]byte("INSERT 0 1\x00"))
	f.Add([]byte("\x00\x00\x00\x01\x00\x00\x00\x02"))
	f.Add([]byte("T"))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Query and CommandComplete: one string, its NUL the last byte.
		var q pgproto3.Query
		qerr := q.Decode(body)
		if sql, err := QueryText(body); (err == nil) != (qerr == nil) || err == nil && string(sql) != q.String {
			t.Fatalf("QueryText = %q, %v; pgproto3 %q, %v", sql, err, q.String, qerr)
		}
		var cc pgproto3.CommandComplete
		ccerr := cc.Decode(body)
		if tag, err := ParseCommandComplete(body); (err == nil) != (ccerr == nil) || err == nil && !bytes.Equal(tag, cc.CommandTag) {
			t.Fatalf("ParseCommandComplete = %q, %v; pgproto3 %q, %v", tag, err, cc.CommandTag, ccerr)
		}

		var p pgproto3.Parse
		perr := p.Decode(body)
		name, sql, err := ParseText(body)
		if err == nil {
			if perr != nil || name != p.Name || string(sql) != p.Query {
				t.Fatalf("ParseText = %q, %q; pgproto3 %+v, %v", name, sql, p, perr)
			}
			if want := len(p.Name) + len(p.Query) + 4 + 4*len(p.ParameterOIDs); len(body) != want {
				t.Fatalf("ParseText accepted %d bytes for a %d-byte Parse", len(body), want)
			}
		}
		if perr == nil && !strings.Contains(p.Name, "\x00") {
			enc, eerr := p.Encode(nil)
			if eerr == nil {
				if n2, s2, err := ParseText(enc[5:]); err != nil || n2 != p.Name || string(s2) != p.Query {
					t.Fatalf("ParseText of re-encoded %+v = %q, %q, %v", p, n2, s2, err)
				}
			}
		}

		var e pgproto3.ErrorResponse
		eerr := e.Decode(body)
		sev, code, msg, err := ParseErrorFields(body)
		if err == nil {
			want := e.SeverityUnlocalized
			if want == "" {
				want = e.Severity
			}
			if eerr != nil || sev != want || code != e.Code || msg != e.Message {
				t.Fatalf("ParseErrorFields = %q %q %q; pgproto3 %+v, %v", sev, code, msg, e, eerr)
			}
		}

		// BackendKeyData: protocol 3.0's 4-byte key only (pgproto3 takes 3.2's longer ones).
		var k pgproto3.BackendKeyData
		kerr := k.Decode(body)
		key, err := ParseBackendKeyData(body)
		if (err == nil) != (kerr == nil && len(body) == 8) ||
			err == nil && (key.ProcessID != k.ProcessID || !bytes.Equal(k.SecretKey, binary.BigEndian.AppendUint32(nil, key.SecretKey))) {
			t.Fatalf("ParseBackendKeyData = %+v, %v; pgproto3 %+v, %v", key, err, k, kerr)
		}

		if st, err := ParseReadyForQuery(body); err == nil && (len(body) != 1 || !strings.ContainsRune("ITE", rune(st))) {
			t.Fatalf("ParseReadyForQuery(%q) = %q", body, st)
		}
	})
}

// FuzzErrorResponseRoundTrip checks that an ErrorResponse built from any
// texts reads back as written (up to a NUL, where a field must end) by
// ParseErrorFields and by pgproto3, in one well-formed frame.
func FuzzErrorResponseRoundTrip(f *testing.F) {
	f.Add("FATAL", "08P01", "invalid message", "detail", "hint", 0)
	f.Add("", "", "", "", "", 7)
	f.Add("ERROR", "42\x0001", "a\x00b", "", "h", -1)
	f.Fuzz(func(t *testing.T, severity, code, message, detail, hint string, pos int) {
		e := &PGError{Severity: severity, Code: code, Message: message, Detail: detail, Hint: hint, Position: pos}
		frame := AppendErrorResponse([]byte("x"), e)[1:]
		r := NewFrameReader(bytes.NewReader(frame), 0)
		typ, body, err := r.Next()
		if err != nil || typ != MsgErrorResponse {
			t.Fatalf("frame %q: %c, %v", frame, typ, err)
		}
		if _, _, err := r.Next(); err == nil {
			t.Fatalf("frame %q holds more than one message", frame)
		}
		cut := func(s string) string {
			if i := strings.IndexByte(s, 0); i >= 0 {
				return s[:i]
			}
			return s
		}
		sev, c, msg, err := ParseErrorFields(body)
		if err != nil || sev != cut(severity) || c != cut(code) || msg != cut(message) {
			t.Fatalf("ParseErrorFields = %q %q %q %v; wrote %+v", sev, c, msg, err, e)
		}
		var pe pgproto3.ErrorResponse
		if err := pe.Decode(body); err != nil || pe.Detail != cut(detail) || pe.Hint != cut(hint) {
			t.Fatalf("pgproto3 decoded %+v, %v; wrote %+v", pe, err, e)
		}
		if pos > 0 && pos <= 1<<31-1 && int(pe.Position) != pos {
			t.Fatalf("position %d read back as %d", pos, pe.Position)
		}
	})
}
