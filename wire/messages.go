package wire

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

// Parsers for the few message bodies the proxy inspects, straight from the
// bytes a FrameReader returns. A malformed body is a FATAL 08P01: PostgreSQL
// would refuse it as well, and the proxy must not act on a guess.

func errMalformed(msg string) error {
	return Fatalf(CodeProtocolViolation, "invalid %s message format", msg)
}

// QueryText returns the SQL text of a Query body, as a slice of body (no
// copy: a session keeps a text its client repeats rather than copy it again).
func QueryText(body []byte) ([]byte, error) {
	if i := bytes.IndexByte(body, 0); i < 0 || i != len(body)-1 {
		return nil, errMalformed("Query")
	}
	return body[:len(body)-1], nil
}

// ParseText returns the statement name and SQL text of a Parse body; the
// text is a slice of body, not a copy.
func ParseText(body []byte) (name string, sql []byte, err error) {
	name, rest, ok := cstring(body)
	if !ok {
		return "", nil, errMalformed("Parse")
	}
	i := bytes.IndexByte(rest, 0)
	if i < 0 || len(rest)-i-1 < 2 {
		return "", nil, errMalformed("Parse")
	}
	sql, rest = rest[:i], rest[i+1:]
	if n := int(binary.BigEndian.Uint16(rest)); len(rest) != 2+4*n {
		return "", nil, errMalformed("Parse")
	}
	return name, sql, nil
}

// ParseCommandComplete returns the command tag of a CommandComplete body,
// e.g. "INSERT 0 1". The tag is a slice of body, not a copy: a relay reads
// one per statement.
func ParseCommandComplete(body []byte) (tag []byte, err error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 || i != len(body)-1 {
		return nil, errMalformed("CommandComplete")
	}
	return body[:i], nil
}

// ParseReadyForQuery returns the transaction status of a ReadyForQuery body:
// 'I' idle, 'T' in a transaction, 'E' in a failed transaction.
func ParseReadyForQuery(body []byte) (txStatus byte, err error) {
	if len(body) != 1 || (body[0] != 'I' && body[0] != 'T' && body[0] != 'E') {
		return 0, errMalformed("ReadyForQuery")
	}
	return body[0], nil
}

// ParseErrorFields returns the severity (the unlocalized V field when
// present), SQLSTATE and message of an ErrorResponse or NoticeResponse body.
func ParseErrorFields(body []byte) (severity, code, message string, err error) {
	var localized string
	for {
		if len(body) == 0 {
			return "", "", "", errMalformed("ErrorResponse")
		}
		field := body[0]
		if field == 0 {
			if len(body) != 1 {
				return "", "", "", errMalformed("ErrorResponse")
			}
			break
		}
		value, rest, ok := cstring(body[1:])
		if !ok {
			return "", "", "", errMalformed("ErrorResponse")
		}
		switch field {
		case 'S':
			localized = value
		case 'V':
			severity = value
		case 'C':
			code = value
		case 'M':
			message = value
		}
		body = rest
	}
	if severity == "" {
		severity = localized
	}
	return severity, code, message, nil
}

// ParseBackendKeyData returns the process id and secret key of a
// BackendKeyData body (protocol 3.0: a 4-byte key).
func ParseBackendKeyData(body []byte) (key CancelKey, err error) {
	if len(body) != 8 {
		return CancelKey{}, errMalformed("BackendKeyData")
	}
	return CancelKey{ProcessID: binary.BigEndian.Uint32(body), SecretKey: binary.BigEndian.Uint32(body[4:])}, nil
}

// Builders append one whole message to buf and return the extended slice.

// beginFrame appends a type byte and a length placeholder; endFrame fills it in.
func beginFrame(buf []byte, typ byte) ([]byte, int) {
	return append(buf, typ, 0, 0, 0, 0), len(buf)
}

func endFrame(buf []byte, start int) []byte {
	binary.BigEndian.PutUint32(buf[start+1:], uint32(len(buf)-start-1))
	return buf
}

func appendCString(buf []byte, s string) []byte {
	// A NUL inside s would end the field early and shift every later field.
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return append(append(buf, s...), 0)
}

// AppendErrorResponse appends e as an ErrorResponse.
func AppendErrorResponse(buf []byte, e *PGError) []byte {
	return appendNotice(buf, MsgErrorResponse, e)
}

// AppendNoticeResponse appends e (severity NOTICE, WARNING…) as a NoticeResponse.
func AppendNoticeResponse(buf []byte, e *PGError) []byte {
	return appendNotice(buf, MsgNoticeResponse, e)
}

func appendNotice(buf []byte, typ byte, e *PGError) []byte {
	buf, start := beginFrame(buf, typ)
	for _, f := range []struct {
		code  byte
		value string
	}{{'S', e.Severity}, {'V', e.Severity}, {'C', e.Code}, {'M', e.Message}, {'D', e.Detail}, {'H', e.Hint}} {
		if f.value != "" {
			buf = appendCString(append(buf, f.code), f.value)
		}
	}
	if e.Position > 0 {
		buf = appendCString(append(buf, 'P'), strconv.Itoa(e.Position))
	}
	return endFrame(append(buf, 0), start)
}

// AppendMessage appends a message of type typ with body as it is.
func AppendMessage(buf []byte, typ byte, body []byte) []byte {
	buf, start := beginFrame(buf, typ)
	return endFrame(append(buf, body...), start)
}

// AppendReadyForQuery appends a ReadyForQuery with txStatus 'I', 'T' or 'E'.
func AppendReadyForQuery(buf []byte, txStatus byte) []byte {
	return append(buf, MsgReadyForQuery, 0, 0, 0, 5, txStatus)
}

// AppendBackendKeyData appends a BackendKeyData (protocol 3.0).
func AppendBackendKeyData(buf []byte, key CancelKey) []byte {
	buf = append(buf, MsgBackendKeyData, 0, 0, 0, 12)
	buf = binary.BigEndian.AppendUint32(buf, key.ProcessID)
	return binary.BigEndian.AppendUint32(buf, key.SecretKey)
}

// AppendParameterStatus appends a ParameterStatus.
func AppendParameterStatus(buf []byte, name, value string) []byte {
	buf, start := beginFrame(buf, MsgParameterStatus)
	return endFrame(appendCString(appendCString(buf, name), value), start)
}

// AppendCommandComplete appends a CommandComplete with tag.
func AppendCommandComplete(buf []byte, tag string) []byte {
	buf, start := beginFrame(buf, MsgCommandComplete)
	return endFrame(appendCString(buf, tag), start)
}

// AppendQuery appends a Query, e.g. for a session reset sent to a backend.
func AppendQuery(buf []byte, sql string) []byte {
	buf, start := beginFrame(buf, MsgQuery)
	return endFrame(appendCString(buf, sql), start)
}

// AppendParse appends a Parse of sql as the prepared statement name, with
// no parameter types.
func AppendParse(buf []byte, name, sql string) []byte {
	buf, start := beginFrame(buf, MsgParse)
	return endFrame(append(appendCString(appendCString(buf, name), sql), 0, 0), start)
}

// AppendBind appends a Bind of the statement stmt, which takes no
// parameters, to portal, with every result column in text.
func AppendBind(buf []byte, portal, stmt string) []byte {
	buf, start := beginFrame(buf, 'B')
	return endFrame(append(appendCString(appendCString(buf, portal), stmt), 0, 0, 0, 0, 0, 0), start)
}

// AppendExecute appends an Execute of portal, for all of its rows.
func AppendExecute(buf []byte, portal string) []byte {
	buf, start := beginFrame(buf, 'E')
	return endFrame(append(appendCString(buf, portal), 0, 0, 0, 0), start)
}

// AppendClose appends a Close of the prepared statement (kind 'S') or the
// portal (kind 'P') name.
func AppendClose(buf []byte, kind byte, name string) []byte {
	buf, start := beginFrame(buf, 'C')
	return endFrame(appendCString(append(buf, kind), name), start)
}

// AppendSync appends a Sync.
func AppendSync(buf []byte) []byte {
	return append(buf, MsgSync, 0, 0, 0, 4)
}

// AppendCancelRequest appends a CancelRequest packet, sent alone on a new
// connection to a backend.
func AppendCancelRequest(buf []byte, key CancelKey) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 16)
	buf = binary.BigEndian.AppendUint32(buf, cancelRequestCode)
	buf = binary.BigEndian.AppendUint32(buf, key.ProcessID)
	return binary.BigEndian.AppendUint32(buf, key.SecretKey)
}
