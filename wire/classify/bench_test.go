package classify

import (
	"fmt"
	"testing"
)

// BenchmarkClassify compares the cgo-free fast path with the parser path.
func BenchmarkClassify(b *testing.B) {
	cases := []struct{ name, sql string }{
		{"fast/select", "SELECT id, name, email FROM users WHERE tenant_id = $1 AND id = $2"},
		{"fast/insert", "INSERT INTO events (tenant_id, kind, payload) VALUES ($1, $2, $3) RETURNING id"},
		{"fast/begin", "BEGIN"},
		{"parser/select-with-into-word", "SELECT * FROM t WHERE note = 'into'"},
		{"parser/create-table", "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE)"},
		{"parser/select-into", "SELECT * INTO archive FROM events WHERE ts < now() - interval '30 days'"},
		{"parser/multi", "INSERT INTO t VALUES (1); CREATE TABLE u (id int); COMMIT"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Classify(c.sql)
			}
		})
	}
}

// BenchmarkCache: a text the parser read before, from the cache, against
// parsing it again (BenchmarkClassify/parser/...).
func BenchmarkCache(b *testing.B) {
	c := NewCache(1024, 4096)
	for _, sql := range []string{
		"SELECT * FROM t WHERE note = 'into'",
		"INSERT INTO t VALUES (1); CREATE TABLE u (id int); COMMIT",
	} {
		b.Run(sql[:6], func(b *testing.B) {
			b.ReportAllocs()
			c.Classify(sql)
			for b.Loop() {
				c.Classify(sql)
			}
		})
	}
}

// BenchmarkMayCallWritingFunction: the row guard's look at a SELECT with a
// parenthesis that was seen before (a cached answer).
func BenchmarkMayCallWritingFunction(b *testing.B) {
	const sql = "SELECT id, lower(name), count(*) OVER () FROM accounts WHERE id = $1"
	MayCallWritingFunction(sql, nil)
	b.ReportAllocs()
	for b.Loop() {
		if MayCallWritingFunction(sql, nil) {
			b.Fatal("counted as writing")
		}
	}
}

// BenchmarkMayCallOwnFunction: the same where the database defines
// functions of its own, whose names the statement's are checked against.
func BenchmarkMayCallOwnFunction(b *testing.B) {
	var ddl []string
	for i := range 50 {
		ddl = append(ddl, fmt.Sprintf("CREATE FUNCTION f%d() RETURNS int LANGUAGE sql AS 'SELECT 1'", i))
	}
	own := OwnFunctions(nil, ddl)
	const sql = "SELECT a.id, lower(a.name), count(*) OVER () FROM accounts a WHERE a.id = $1"
	MayCallWritingFunction(sql, own)
	b.ReportAllocs()
	for b.Loop() {
		if MayCallWritingFunction(sql, own) {
			b.Fatal("counted as writing")
		}
	}
}
