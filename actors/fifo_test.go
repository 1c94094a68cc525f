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
	l.parse("P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	tr.parse("P0_1", classify.Classify("SELECT abalance FROM pgbench_accounts WHERE aid = $1"))
	tag := []byte("SELECT 1")
	lim := stmtLimits{maxRows: 1000, timeoutMs: 5000}
	round := func() {
		tr.bind("", "P0_1")
		l.bind("", "P0_1")
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
