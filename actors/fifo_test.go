package actors

import "testing"

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
