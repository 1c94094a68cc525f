package wire

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestParsers(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) (string, error)
		body  string
		want  string
		ok    bool
	}{
		{name: "query", parse: parseQuery, body: "SELECT 1\x00", want: "SELECT 1", ok: true},
		{name: "query no terminator", parse: parseQuery, body: "SELECT 1", ok: false},
		{name: "query hidden second statement", parse: parseQuery, body: "SELECT 1\x00DROP TABLE t\x00", ok: false},
		{name: "parse", parse: func(b []byte) (string, error) { n, s, err := ParseText(b); return n + "|" + string(s), err },
			body: "s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17", want: "s1|SELECT $1", ok: true},
		{name: "parse unnamed no params", parse: func(b []byte) (string, error) { n, s, err := ParseText(b); return n + "|" + string(s), err },
			body: "\x00SELECT 1\x00\x00\x00", want: "|SELECT 1", ok: true},
		{name: "parse short param list", parse: func(b []byte) (string, error) { _, s, err := ParseText(b); return string(s), err },
			body: "\x00SELECT $1\x00\x00\x02\x00\x00\x00\x17", ok: false},
		{name: "parse no count", parse: func(b []byte) (string, error) { _, s, err := ParseText(b); return string(s), err },
			body: "\x00SELECT 1\x00", ok: false},
		{name: "command complete", parse: func(b []byte) (string, error) { t, err := ParseCommandComplete(b); return string(t), err }, body: "INSERT 0 1\x00", want: "INSERT 0 1", ok: true},
		{name: "command complete trailing", parse: func(b []byte) (string, error) { t, err := ParseCommandComplete(b); return string(t), err }, body: "INSERT 0 1\x00x", ok: false},
		{name: "ready for query", parse: func(b []byte) (string, error) { s, err := ParseReadyForQuery(b); return string(s), err },
			body: "T", want: "T", ok: true},
		{name: "ready for query bad status", parse: func(b []byte) (string, error) { s, err := ParseReadyForQuery(b); return string(s), err },
			body: "X", ok: false},
		{name: "error fields", parse: func(b []byte) (string, error) { s, c, m, err := ParseErrorFields(b); return s + "|" + c + "|" + m, err },
			body: "SFEHLER\x00VERROR\x00C42501\x00Mpermission denied\x00\x00", want: "ERROR|42501|permission denied", ok: true},
		{name: "error fields localized only", parse: func(b []byte) (string, error) { s, c, m, err := ParseErrorFields(b); return s + "|" + c + "|" + m, err },
			body: "SFATAL\x00C57P01\x00Mbye\x00\x00", want: "FATAL|57P01|bye", ok: true},
		{name: "error fields unterminated", parse: func(b []byte) (string, error) { _, _, m, err := ParseErrorFields(b); return m, err },
			body: "Mbye\x00", ok: false},
		{name: "backend key data", parse: func(b []byte) (string, error) {
			k, err := ParseBackendKeyData(b)
			return string(rune(k.ProcessID)) + string(rune(k.SecretKey)), err
		},
			body: "\x00\x00\x00A\x00\x00\x00B", want: "AB", ok: true},
		{name: "backend key data 3.2 length", parse: func(b []byte) (string, error) { _, err := ParseBackendKeyData(b); return "", err },
			body: "\x00\x00\x00A" + "0123456789012345678901234567890123", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse([]byte(tt.body))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil {
				if CodeOf(err) != CodeProtocolViolation {
					t.Fatalf("err %v has code %s", err, CodeOf(err))
				}
				return
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// The builders produce what pgproto3 decodes.
func TestBuilders(t *testing.T) {
	pe := &PGError{Severity: SeverityError, Code: CodeQueryCanceled, Message: "canceling statement due to query_timeout_ms (100 ms)", Hint: "h"}
	tests := []struct {
		name  string
		frame []byte
		want  pgproto3.BackendMessage
	}{
		{name: "error", frame: AppendErrorResponse(nil, pe), want: &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "57014", Message: pe.Message, Hint: "h"}},
		{name: "notice", frame: AppendNoticeResponse(nil, &PGError{Severity: "WARNING", Code: "01000", Message: "w"}), want: &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000", Message: "w"}},
		{name: "ready for query", frame: AppendReadyForQuery(nil, 'E'), want: &pgproto3.ReadyForQuery{TxStatus: 'E'}},
		{name: "backend key data", frame: AppendBackendKeyData(nil, CancelKey{ProcessID: 7, SecretKey: 9}), want: &pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{0, 0, 0, 9}}},
		{name: "parameter status", frame: AppendParameterStatus(nil, "server_version", "17.2"), want: &pgproto3.ParameterStatus{Name: "server_version", Value: "17.2"}},
		{name: "command complete", frame: AppendCommandComplete(nil, "SELECT 3"), want: &pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := tt.want.Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(tt.frame) != string(want) {
				t.Fatalf("frame %q, want %q", tt.frame, want)
			}
		})
	}
	// The frontend's extended-protocol messages the proxy sends on its own.
	for _, f := range []struct {
		name  string
		frame []byte
		want  pgproto3.FrontendMessage
	}{
		{"parse", AppendParse(nil, "s", "SELECT 1"), &pgproto3.Parse{Name: "s", Query: "SELECT 1"}},
		{"bind", AppendBind(nil, "p", "s"), &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}},
		{"execute", AppendExecute(nil, "p"), &pgproto3.Execute{Portal: "p"}},
		{"close statement", AppendClose(nil, 'S', "s"), &pgproto3.Close{ObjectType: 'S', Name: "s"}},
		{"close portal", AppendClose(nil, 'P', "p"), &pgproto3.Close{ObjectType: 'P', Name: "p"}},
		{"sync", AppendSync(nil), &pgproto3.Sync{}},
	} {
		want, err := f.want.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(f.frame) != string(want) {
			t.Fatalf("%s: frame %q, want %q", f.name, f.frame, want)
		}
	}
	if q := AppendQuery(nil, "SELECT 1"); string(q) != "Q\x00\x00\x00\x0dSELECT 1\x00" {
		t.Fatalf("query %q", q)
	}
	if c := AppendCancelRequest(nil, CancelKey{ProcessID: 1, SecretKey: 2}); string(c) != string(cancelRequest(1, 2)) {
		t.Fatalf("cancel %q", c)
	}
}

// parseQuery is QueryText with the text as a string, for the table above.
func parseQuery(b []byte) (string, error) {
	s, err := QueryText(b)
	return string(s), err
}

// TestTextsAreSlicesOfTheBody: QueryText and ParseText hand out the SQL
// text without copying it, so a relay that has seen the text before need
// not copy it again.
func TestTextsAreSlicesOfTheBody(t *testing.T) {
	q := []byte("SELECT 1\x00")
	if b, err := QueryText(q); err != nil || string(b) != "SELECT 1" || &b[0] != &q[0] {
		t.Fatalf("QueryText = %q, %v (a slice of the body: %v)", b, err, err == nil && &b[0] == &q[0])
	}
	p := []byte("s1\x00SELECT $1\x00\x00\x00")
	if name, b, err := ParseText(p); err != nil || name != "s1" || string(b) != "SELECT $1" || &b[0] != &p[3] {
		t.Fatalf("ParseText = %q, %q, %v", name, b, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = QueryText(q); _, _, _ = ParseText(p[2:]) }); allocs != 0 {
		t.Fatalf("QueryText and ParseText allocate %.1f times", allocs)
	}
}
