package node_test

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// The statements an input picks from: DML on kv, DDL (captured in a
// workspace, refused on a tenant), transaction control, errors, COPY,
// LISTEN/NOTIFY, several statements in one text, and nothing at all.
var fuzzStatements = []string{
	"SELECT 1",
	"SELECT generate_series(1, 10)",
	"INSERT INTO kv VALUES (1, 'a') ON CONFLICT (k) DO UPDATE SET v = kv.v || 'b'",
	"INSERT INTO kv SELECT g, 'g' FROM generate_series(2, 9) g ON CONFLICT DO NOTHING RETURNING k",
	"DELETE FROM kv WHERE k > 3",
	"SELECT * FROM kv",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"SAVEPOINT s1",
	"ROLLBACK TO SAVEPOINT s1",
	"RELEASE SAVEPOINT s1",
	"SELECT 1/0",
	"SELECT pg_sleep(0.01)",
	"LISTEN fz",
	"NOTIFY fz, 'x'",
	"UNLISTEN *",
	"COPY kv FROM STDIN",
	"COPY kv TO STDOUT",
	"COPY (SELECT generate_series(1, 10)) TO STDOUT",
	"",
	" ; ",
	"SELECT 1; SELECT 2",
	"SELECT $1::int",
	"CREATE TABLE IF NOT EXISTS f1 (a int)",
	"DROP TABLE IF EXISTS f1",
	"ALTER TABLE IF EXISTS f1 ADD COLUMN IF NOT EXISTS b text",
	"ALTER TABLE IF EXISTS f1 DROP COLUMN IF EXISTS b",
	"CREATE INDEX IF NOT EXISTS f1_a ON f1 (a)",
	"DROP INDEX IF EXISTS f1_a",
	"CREATE TABLE f2 (a int)",
	"DROP TABLE f2",
	"BEGIN; CREATE TABLE IF NOT EXISTS f3 (a int); COMMIT",
	"SELECT 1; CREATE TABLE IF NOT EXISTS f4 (a int)",
	"CREATE TABLE IF NOT EXISTS f5 (a int); SELECT 1/0",
	"SET TimeZone = 'UTC'",
	"PREPARE p1 AS SELECT 1",
	"EXECUTE p1",
	"DEALLOCATE ALL",
	"DISCARD ALL",
	"SELEC garbage",
}

var fuzzNames = []string{"", "s1", "s2", "nope"}

// fuzzProgram is a decoded input: the bytes to write, in chunks written one
// after another (the reader waits for a ReadyForQuery in between), and
// whether to shut the write side at the end.
type fuzzProgram struct {
	chunks     [][]byte
	closeWrite bool
	steps      []string // the messages, for reports
}

func (p fuzzProgram) String() string {
	return "  " + strings.Join(p.steps, "\n  ")
}

// fuzzMsg is one frontend message.
func fuzzMsg(typ byte, body ...[]byte) []byte {
	n := 4
	for _, b := range body {
		n += len(b)
	}
	out := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(n))
	for _, b := range body {
		out = append(out, b...)
	}
	return out
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func u16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

func u32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

// decodeFuzzOps reads the input as opcodes, each a byte whose value picks a
// message and whose following bytes pick its fields. At the end comes the
// probe (appendProbe).
func decodeFuzzOps(in []byte) fuzzProgram {
	var p fuzzProgram
	var cur []byte
	next := func() int {
		if len(in) == 0 {
			return 0
		}
		b := in[0]
		in = in[1:]
		return int(b)
	}
	pick := func(list []string) string { return list[next()%len(list)] }
	add := func(step string, msg []byte) {
		p.steps = append(p.steps, step)
		cur = append(cur, msg...)
	}
	for len(in) > 0 && len(p.steps) < 64 {
		switch op := next() % 19; op {
		case 0:
			sql := pick(fuzzStatements)
			add(fmt.Sprintf("Query %q", sql), fuzzMsg('Q', cstr(sql)))
		case 1:
			name, sql := pick(fuzzNames), pick(fuzzStatements)
			var oids []byte
			nparams := []int{0, 1, 2, 65535}[next()%4]
			for i := 0; i < nparams && i < 2; i++ {
				oids = append(oids, u32(23)...)
			}
			add(fmt.Sprintf("Parse %q %q params=%d", name, sql, nparams), fuzzMsg('P', cstr(name), cstr(sql), u16(nparams), oids))
		case 2:
			portal, stmt := pick(fuzzNames), pick(fuzzNames)
			nparams := []int{0, 1, 2, 65535}[next()%4]
			var params []byte
			for i := 0; i < nparams && i < 2; i++ {
				params = append(params, u32(1)...)
				params = append(params, '7')
			}
			nfmt := next() % 3
			var fmts []byte
			for i := 0; i < nfmt; i++ {
				fmts = append(fmts, u16(i)...)
			}
			add(fmt.Sprintf("Bind %q %q params=%d resultformats=%d", portal, stmt, nparams, nfmt),
				fuzzMsg('B', cstr(portal), cstr(stmt), u16(0), u16(nparams), params, u16(nfmt), fmts))
		case 3:
			portal, max := pick(fuzzNames), next()%3
			add(fmt.Sprintf("Execute %q max=%d", portal, max), fuzzMsg('E', cstr(portal), u32(max)))
		case 4, 5:
			kind := "SP"[next()%2]
			name := pick(fuzzNames)
			typ := map[int]byte{4: 'D', 5: 'C'}[op]
			add(fmt.Sprintf("%s %c %q", map[int]string{4: "Describe", 5: "Close"}[op], kind, name), fuzzMsg(typ, []byte{kind}, cstr(name)))
		case 6:
			add("Sync", fuzzMsg('S'))
		case 7:
			add("Flush", fuzzMsg('H'))
		case 8:
			n := next() % 64
			for i := 0; i < n; i++ {
				cur = append(cur, fuzzMsg('H')...)
			}
			p.steps = append(p.steps, fmt.Sprintf("Flush x%d", n))
		case 9:
			data := []string{"10\tx\n", "garbage\n", "\\.\n", ""}[next()%4]
			add(fmt.Sprintf("CopyData %q", data), fuzzMsg('d', []byte(data)))
		case 10:
			add("CopyDone", fuzzMsg('c'))
		case 11:
			add("CopyFail", fuzzMsg('f', cstr("fuzz")))
		case 12:
			// FunctionCall of pg_backend_pid (oid 2026) or an unknown oid.
			oid := []int{2026, 0, 1}[next()%3]
			add(fmt.Sprintf("FunctionCall oid=%d", oid), fuzzMsg('F', u32(oid), u16(0), u16(0), u16(0)))
		case 13:
			add("Terminate", fuzzMsg('X'))
		case 14:
			add("Query without its NUL", fuzzMsg('Q'))
		case 15:
			// A header that promises more than ever comes: nothing after
			// it can be read, so the input ends here, with the probe
			// ahead of it (answered while the rest of the message is
			// still awaited), and the write side shut after the answer.
			typ := "QPBdX"[next()%5]
			n := []int{1 << 20, 1<<30 - 1, 1 << 31}[next()%3]
			cur = appendProbe(&p, cur)
			cur = append(cur, typ)
			cur = append(cur, u32(n)...)
			cur = append(cur, "SELECT 1"...)
			p.steps = append(p.steps, fmt.Sprintf("%c with length %d and 8 bytes", typ, n))
			p.chunks = append(p.chunks, cur)
			p.closeWrite = true
			return p
		case 16:
			typ := byte(next())
			n := next() % 8
			body := in[:min(len(in), n)]
			in = in[len(body):]
			add(fmt.Sprintf("raw %q %q", typ, body), fuzzMsg(typ, body))
		case 17:
			if len(cur) > 0 {
				p.chunks = append(p.chunks, cur)
				cur = nil
				p.steps = append(p.steps, "-- write, wait for ReadyForQuery")
			}
		case 18:
			// An extended-protocol statement in the usual order.
			sql := pick(fuzzStatements)
			add(fmt.Sprintf("Parse/Bind/Describe/Execute %q", sql),
				append(append(append(fuzzMsg('P', cstr(""), cstr(sql), u16(0)),
					fuzzMsg('B', cstr(""), cstr(""), u16(0), u16(0), u16(0))...),
					fuzzMsg('D', []byte{'P'}, cstr(""))...),
					fuzzMsg('E', cstr(""), u32(0))...))
		}
	}
	p.chunks = append(p.chunks, appendProbe(&p, cur))
	return p
}

// appendProbe appends the messages that end an input: a CopyFail (out of
// any COPY), a Sync (out of any failed batch), a ROLLBACK and a Query whose
// row marks the end.
func appendProbe(p *fuzzProgram, cur []byte) []byte {
	p.steps = append(p.steps, "-- probe: CopyFail, Sync, Query ROLLBACK, Query marker")
	cur = append(cur, fuzzMsg('f', cstr("probe"))...)
	cur = append(cur, fuzzMsg('S')...)
	cur = append(cur, fuzzMsg('Q', cstr("ROLLBACK"))...)
	return append(cur, fuzzMsg('Q', cstr("SELECT '"+fuzzMarker+"'"))...)
}

// fuzzSeeds are inputs of the sequences named in the target's doc.
var fuzzSeeds = [][]byte{
	{0, 0, 0},                        // tenant: Query SELECT 1
	{2, 0, 24, 17, 0, 25, 17, 0, 29}, // workspace: DDL, waiting in between
	{3, 18, 24, 6, 18, 12, 6},        // guarded workspace: pipeline with an error
	{1, 0, 1, 17, 18, 3, 6},          // guarded tenant: rows past the limit
	{0, 3, 3, 0, 6},                  // Execute of an unknown portal, Sync
	{0, 2, 0, 3, 0, 0, 6},            // Bind to an unknown statement
	{0, 6, 6, 6},                     // Syncs alone
	{2, 5, 0, 3, 5, 1, 3, 6},         // Close of unknown names
	{0, 1, 1, 0, 3, 6},               // Parse with 65535 parameters
	{0, 13, 0, 0, 6},                 // messages after Terminate
	{0, 9, 0, 10, 11},                // COPY messages out of a COPY
	{0, 0, 17, 9, 0, 10},             // COPY FROM STDIN
	{2, 0, 17, 9, 1, 11},             // COPY FROM STDIN failed in the workspace
	{0, 8, 63, 8, 40},                // Flush storms
	{0, 12, 0, 6, 12, 1},             // FunctionCall
	{0, 0, 20, 14},                   // empty Query, and a Query without its NUL
	{0, 15, 0, 1},                    // a huge length header
	{2, 15, 1, 2},
	{0, 1, 0, 1, 0, 0, 18, 6, 0, 0, 2, 1, 1, 0, 0, 3, 1, 0, 6}, // simple and extended interleaved
	{6, 0, 14, 17, 0, 15, 17, 0, 7},                            // LISTEN/NOTIFY
	{4, 16, 'z', 3, 1, 2, 3},                                   // an unknown message type
	{5, 0, 6, 18, 30, 18, 30, 6, 0, 7},                         // a pipeline whose DDL fails halfway, in a transaction
}
