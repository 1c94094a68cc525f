package querylog

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendLine appends e as one JSON log line ({"msg":"query",…} and a
// newline), byte for byte what encoding/json writes for it, without
// reflection: on a busy node the writer encodes tens of thousands of lines a
// second.
func appendLine(b []byte, e *Entry) []byte {
	b = append(b, `{"msg":"query","time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "node", e.Node)
	b = appendField(b, "project", e.Project)
	b = appendField(b, "database", e.Database)
	b = appendField(b, "workspace", e.Workspace)
	if e.Tenant != "" {
		b = appendField(b, "tenant", e.Tenant)
	}
	b = appendField(b, "key_id", e.KeyID)
	b = appendField(b, "role", e.Role)
	b = appendField(b, "client_ip", e.ClientIP)
	b = appendField(b, "statement", e.Statement)
	if e.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, e.DurationMs)
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, e.Rows, 10)
	b = appendField(b, "sqlstate", e.SQLState)
	return append(b, "}\n"...)
}

// appendField appends ,"name":"value".
func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

const hex = "0123456789abcdef"

// plainASCII marks the ASCII bytes a JSON string carries as they are: not
// control characters, quotes, backslashes or HTML's < > &. One table load per
// byte keeps the statement text, most of a line, cheap to copy.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string the way encoding/json does: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat formats f as encoding/json does (ES6 number formatting).
func appendFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, '0') // encoding/json refuses these; a duration never is one
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
