package actors

// fifo is a session's queue of statements awaiting the backend's answers.
// It reuses its array: once drained it starts over at the front, and a
// queue that never drains (a pipelining client) is compacted as it goes,
// so steady traffic does not allocate.
type fifo[T any] struct {
	buf  []T
	head int // index of the oldest item
}

func (q *fifo[T]) push(v T) {
	if q.head > 0 && q.head >= len(q.buf)/2 && len(q.buf) == cap(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, v)
}

func (q *fifo[T]) len() int { return len(q.buf) - q.head }

// front is the oldest item; the queue must not be empty.
func (q *fifo[T]) front() *T { return &q.buf[q.head] }

// pop removes the oldest item; the queue must not be empty.
func (q *fifo[T]) pop() T {
	v := q.buf[q.head]
	var zero T
	q.buf[q.head] = zero // no reference kept for the collector
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
		if cap(q.buf) > maxKeptQueue {
			q.buf = nil // a Query of many statements does not leave its array behind
		}
	}
	return v
}

// maxKeptQueue is the largest array a drained queue keeps for reuse.
const maxKeptQueue = 64

// items are the queued items, oldest first.
func (q *fifo[T]) items() []T { return q.buf[q.head:] }
