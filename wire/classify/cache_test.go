package classify

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestCacheAgreesWithClassify: from the cache or not, a text classifies as
// Classify says, and only parser texts within the size limit are kept.
func TestCacheAgreesWithClassify(t *testing.T) {
	c := NewCache(64, 100)
	texts := []string{
		"SELECT 1", "BEGIN", "INSERT INTO t VALUES ($1)", // fast path
		"SELECT * FROM t WHERE note = 'into'", "CREATE TABLE u (id int)", "SELECT * INTO a FROM b",
		"INSERT INTO t VALUES (1); CREATE TABLE u (id int); COMMIT", "COPY t FROM STDIN", "SELEKT nonsense",
		"", "-- only a comment", "CREATE TABLE x (id int)\x00DROP TABLE y",
		"SELECT * FROM t WHERE note = 'into' AND a = '" + string(make([]byte, 200)) + "'", // over maxText
		"SELECT 1 " + strings.Repeat("+-", 5000),                                          // too complex
	}
	for round := range 3 {
		for _, sql := range texts {
			if got, want := c.Classify(sql), Classify(sql); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, %q: cache %+v, Classify %+v", round, sql, got, want)
			}
		}
	}
	want := map[string]bool{} // texts the parser reads, within 100 bytes, each once
	for _, sql := range texts {
		if sql, _, ok := withoutParser(sql, nil); !ok && len(sql) <= 100 {
			want[sql] = true
		}
	}
	if n := c.Len(); n != len(want) || n < 6 {
		t.Fatalf("cached %d texts, want %d (at least the six for the parser)", n, len(want))
	}
	for sql := range want {
		if _, ok := c.entries[sql]; !ok {
			t.Fatalf("%q is not cached", sql)
		}
	}
}

// TestCacheStaysBounded: more texts than it holds, from several goroutines
// (run with -race), leave at most maxEntries and right answers.
func TestCacheStaysBounded(t *testing.T) {
	c := NewCache(50, 4096)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				sql := "CREATE TABLE t" + strconv.Itoa(g*1000+i%80) + " (id int)"
				r := c.Classify(sql)
				if len(r.Statements) != 1 || r.Statements[0].Kind != DDL || r.Statements[0].Text != sql {
					t.Errorf("%q: %+v", sql, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > 50 || n == 0 {
		t.Fatalf("cache holds %d texts, want 1-50", n)
	}
}

// TestClassifyIn: with a one-statement buffer a text classifies as Classify
// says; the fast path's statement lands in the buffer, with no allocation,
// and a Result from the cache is not the buffer's.
func TestClassifyIn(t *testing.T) {
	c := NewCache(64, 100)
	var one [1]Statement
	for _, sql := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 7;", "BEGIN", "", "-- only a comment",
		"CREATE TABLE u (id int)", "INSERT INTO t VALUES (1); COMMIT", "SELEKT nonsense",
		"SELECT 1 " + strings.Repeat("+-", 5000),
	} {
		for range 2 { // the second time from the cache, for parser texts
			got, want := c.ClassifyIn(sql, &one), Classify(sql)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: ClassifyIn %+v, Classify %+v", sql, got, want)
			}
			_, _, fast := withoutParser(sql, nil)
			if inBuffer := len(got.Statements) == 1 && &got.Statements[0] == &one[0]; inBuffer != (fast && len(want.Statements) == 1) {
				t.Fatalf("%q: statement in the buffer %v, fast path %v", sql, inBuffer, fast)
			}
		}
	}
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 1234567;"
	if allocs := testing.AllocsPerRun(100, func() { c.ClassifyIn(sql, &one) }); allocs != 0 {
		t.Fatalf("ClassifyIn on the fast path allocates %.1f times", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { c.Classify(sql) }); allocs != 1 {
		t.Fatalf("Classify on the fast path allocates %.1f times, want its one slice", allocs)
	}
}

// TestClassifyInBoundsTheParser: a text longer than MaxParsed is read a
// statement at a time, so its statements, DDL among them, are all seen;
// only a statement longer than MaxParsed that needs the parser is refused
// unread, and a longer single statement the fast path knows is not.
func TestClassifyInBoundsTheParser(t *testing.T) {
	c := NewCache(16, 4096)
	var many, one strings.Builder
	one.WriteString("INSERT INTO t VALUES ")
	n := 0
	for ; many.Len() <= MaxParsed; n++ {
		fmt.Fprintf(&many, "SELECT %d;", n)
		fmt.Fprintf(&one, "(%d),", n)
	}
	if r := c.ClassifyIn(many.String(), nil); r.TooLong || r.Unparsed || len(r.Statements) != n || r.Statements[n-1].Text != fmt.Sprint("SELECT ", n-1) {
		t.Fatalf("%d bytes of %d statements: TooLong %v, Unparsed %v, %d statements", many.Len(), n, r.TooLong, r.Unparsed, len(r.Statements))
	}
	text := strings.TrimSuffix(one.String(), ",")
	if r := c.ClassifyIn(text, nil); r.TooLong || len(r.Statements) != 1 || r.Statements[0].Kind != DML {
		t.Fatalf("a single INSERT of %d bytes: TooLong %v, %d statements", len(text), r.TooLong, len(r.Statements))
	}
	if r := c.ClassifyIn("SELECT 1; SELECT 2", nil); r.TooLong || len(r.Statements) != 2 {
		t.Fatalf("a short text: %+v", r)
	}

	hidden := many.String() + " /* ; */ CREATE TABLE x (a text); SELECT 'a;b'"
	if r := c.ClassifyIn(hidden, nil); !r.HasDDL() || len(r.Statements) != n+2 || r.Statements[n].Text != "CREATE TABLE x (a text)" {
		t.Fatalf("DDL after %d bytes: HasDDL %v, %d statements", len(hidden), r.HasDDL(), len(r.Statements))
	}
	// A literal with ';' in a long single statement: the scanner tells the
	// fast path it is one statement.
	literal := "INSERT INTO docs VALUES ('" + strings.Repeat("a;b ", MaxParsed/4+1) + "'); SELECT 1"
	if r := c.ClassifyIn(literal, nil); r.TooLong || len(r.Statements) != 2 || r.Statements[0].Kind != DML || r.Statements[0].Tag != "INSERT" {
		t.Fatalf("an INSERT of a literal with ';': TooLong %v, %d statements", r.TooLong, len(r.Statements))
	}
	// What only the parser can read, longer than MaxParsed, is refused.
	into := "SELECT 1; SELECT '" + strings.Repeat("into ", MaxParsed/5+1) + "'"
	if r := c.ClassifyIn(into, nil); !r.TooLong || len(r.Statements) != 0 {
		t.Fatalf("a SELECT the parser must read, %d bytes: %+v", len(into), r.TooLong)
	}

	// Refusals point into the whole text.
	bad := many.String() + "SELECT 1; SELEC x"
	if r := c.ClassifyIn(bad, nil); !r.Unparsed || r.ParseErrorPos != strings.Index(bad, "SELEC x")+1 {
		t.Fatalf("a syntax error after %d bytes: Unparsed %v at %d, want %d", len(bad), r.Unparsed, r.ParseErrorPos, strings.Index(bad, "SELEC x")+1)
	}
	if r := c.ClassifyIn(many.String()+"SELECT 'open", nil); !r.Unparsed {
		t.Fatalf("an unterminated literal: %+v", r.Unparsed)
	}
	// The scanner cuts a BEGIN ATOMIC body where the parser would not: the
	// text is refused, not read as something else.
	atomic := many.String() + "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END"
	if r := c.ClassifyIn(atomic, nil); !r.Unparsed {
		t.Fatalf("a BEGIN ATOMIC body after %d bytes: Unparsed %v, HasDDL %v", len(atomic), r.Unparsed, r.HasDDL())
	}
}
