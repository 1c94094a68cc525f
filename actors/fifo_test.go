package actors

import (
	"testing"

	"tdb/wire/classify"
)

// TestFifo: items come out in order; a queue that drains, and one that
// never does, keep their array small.
func TestFifo(t *testing.T) {
	var q fifo[int]
	next, want := 0, 0
	for i := 0; i < 10000; i++ {
		q.push(next)
		next++
		q.push(next)
		next++
		for q.len() > 1 { // always one left: the queue never drains
			if got := q.pop(); got != want {
				t.Fatalf("popped %d, want %d", got, want)
			}
			want++
		}
	}
	if cap(q.buf) > 16 {
		t.Fatalf("a queue of at most 3 items grew to %d", cap(q.buf))
	}
	if q.len() != 1 || *q.front() != want || len(q.items()) != 1 {
		t.Fatalf("left %v, want [%d]", q.items(), want)
	}
	q.pop()
	if q.len() != 0 || q.head != 0 {
		t.Fatalf("drained queue: len %d head %d", q.len(), q.head)
	}
	if allocs := testing.AllocsPerRun(100, func() { q.push(1); q.push(2); q.pop(); q.pop() }); allocs != 0 {
		t.Fatalf("steady traffic allocates %.1f times", allocs)
	}
}

// TestPreparedRoundTripDoesNotAllocate: the bookkeeping of a prepared
// statement's round trip (Bind, Execute, Sync; DataRow, CommandComplete,
// ReadyForQuery) allocates nothing once the session has seen it: it runs
// for every message a relay forwards.
func TestPreparedRoundTripDoesNotAllocate(t *testing.T) {
	l, _ := newTestLimiter()
	tr := newTracker()
	const text = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	tr.parse("P0_1", text, classify.Classify(text))
	tag := []byte("SELECT 1")
	lim := stmtLimits{maxRows: 1000, timeoutMs: 5000}
	round := func() {
		tr.bind("", "P0_1")
		l.bind("", text)
		tr.execute("")
		l.execute("", lim)
		tr.sync()
		l.sync()
		l.dataRow()
		tr.commandComplete(tag)
		l.commandComplete(tag)
		tr.readyForQuery('I')
		l.readyForQuery('I')
		if d := l.collect(); len(d) != 1 || d[0].rows != 1 || d[0].text == "" {
			t.Fatalf("finished statements %+v", d)
		}
	}
	round()
	if allocs := testing.AllocsPerRun(200, round); allocs != 0 {
		t.Fatalf("a prepared round trip allocates %.1f times", allocs)
	}
}

// TestPlainQueryRoundTripDoesNotAllocate: the bookkeeping of a simple
// Query's round trip (classification on the fast path, tracking, limits and
// the query log's record; DataRow, CommandComplete, ReadyForQuery) allocates
// nothing once the session has seen one: the statement's text, which the
// query log keeps, is the message's only allocation (session.text).
func TestPlainQueryRoundTripDoesNotAllocate(t *testing.T) {
	l, _ := newTestLimiter()
	tr := newTracker()
	c := classify.NewCache(16, 100)
	var one [1]classify.Statement
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 42;"
	tag := []byte("SELECT 1")
	lim := stmtLimits{maxRows: 1000, timeoutMs: 5000}
	round := func() {
		r := c.ClassifyIn(sql, &one)
		tr.query(r)
		stmts := [1]string{r.Statements[0].Text}
		l.query(sql, stmts[:], lim)
		l.dataRow()
		tr.commandComplete(tag)
		l.commandComplete(tag)
		tr.readyForQuery('I')
		l.readyForQuery('I')
		if d := l.collect(); len(d) != 1 || d[0].rows != 1 || d[0].text != r.Statements[0].Text {
			t.Fatalf("finished statements %+v", d)
		}
	}
	round()
	if allocs := testing.AllocsPerRun(200, round); allocs != 0 {
		t.Fatalf("a plain query's round trip allocates %.1f times", allocs)
	}
}

// TestSessionTextReusesTheLastText: a text the client repeats is not copied
// again; a long one is not kept.
func TestSessionTextReusesTheLastText(t *testing.T) {
	var s session
	b := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	first := s.text(b)
	if allocs := testing.AllocsPerRun(100, func() {
		if s.text(b) != first {
			t.Fatal("text changed")
		}
	}); allocs != 0 {
		t.Fatalf("a repeated text allocates %.1f times", allocs)
	}
	if got := s.text([]byte("SELECT 2")); got != "SELECT 2" || s.lastText != "SELECT 2" {
		t.Fatalf("a new text gave %q, kept %q", got, s.lastText)
	}
	long := make([]byte, maxKeptText+1)
	if got := s.text(long); len(got) != len(long) || s.lastText != "SELECT 2" {
		t.Fatalf("a long text gave %d bytes and the session kept %d", len(got), len(s.lastText))
	}
}

// TestFifoDrainedLargeQueueLetsGo: the array a Query of many statements
// grew is not kept once the queue drains; a small one is, for reuse.
func TestFifoDrainedLargeQueueLetsGo(t *testing.T) {
	var q fifo[int]
	for i := range 10000 {
		q.push(i)
	}
	for q.len() > 0 {
		q.pop()
	}
	if cap(q.buf) != 0 {
		t.Fatalf("a drained queue keeps an array of %d", cap(q.buf))
	}
	q.push(1)
	q.pop()
	if cap(q.buf) == 0 {
		t.Fatal("a small drained queue gave its array up")
	}
}
