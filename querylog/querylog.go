package querylog

import (
	"bufio"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxStatement is the longest statement text kept; longer texts are cut and
// marked with Truncated.
const MaxStatement = 4 << 10

// DefaultCapacity is the number of entries a node keeps in memory.
const DefaultCapacity = 10_000

// Entry is one statement the proxy relayed.
type Entry struct {
	Time       time.Time `json:"time"` // when the statement started
	Node       string    `json:"node"`
	Project    string    `json:"project"`
	Database   string    `json:"database"` // wire database name, e.g. myapp__wayne
	Workspace  string    `json:"workspace"`
	Tenant     string    `json:"tenant,omitempty"`
	KeyID      string    `json:"key_id"`
	Role       string    `json:"role"`
	ClientIP   string    `json:"client_ip"`
	Statement  string    `json:"statement"`
	Truncated  bool      `json:"truncated,omitempty"`
	DurationMs float64   `json:"duration_ms"`
	Rows       int64     `json:"rows"`
	SQLState   string    `json:"sqlstate"` // 00000 on success
}

// Truncate cuts a statement to MaxStatement bytes on a UTF-8 boundary. A cut
// statement is a copy: the log does not keep the whole text alive.
func Truncate(s string) (string, bool) {
	if len(s) <= MaxStatement {
		return s, false
	}
	cut := MaxStatement
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a multi-byte character
		cut--
	}
	return strings.Clone(s[:cut]), true
}

// Filter selects entries; zero fields match everything.
type Filter struct {
	Since      time.Time
	Project    string
	Tenant     string
	Workspaces map[string]bool        // workspaces (and their tenants) allowed; nil: all
	Tenants    map[string]TenantScope // tenants allowed, by name; nil: all
	Limit      int                    // newest entries kept; 0: all that match
}

// TenantScope is the tenant a name stands for now: entries of an earlier,
// deleted tenant of the same name (another blueprint's, or its own blueprint's
// before the name was reused) belong to someone else.
type TenantScope struct {
	Blueprint string
	Since     time.Time // the tenant's creation
}

func (f *Filter) match(e *Entry) bool {
	switch {
	case !f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	case f.Project != "" && e.Project != f.Project:
		return false
	case f.Tenant != "" && e.Tenant != f.Tenant:
		return false
	case f.Workspaces != nil && !f.Workspaces[e.Workspace]:
		return false
	case f.Tenants != nil && !f.allowsTenant(e):
		return false
	}
	return true
}

func (f *Filter) allowsTenant(e *Entry) bool {
	t, ok := f.Tenants[e.Tenant]
	return ok && e.Tenant != "" && e.Workspace == t.Blueprint && !e.Time.Before(t.Since)
}

// Log is a node's query log: a ring of the latest entries and an optional
// JSON-lines writer fed by its own goroutine, so a slow log output never
// slows the relay (lines are dropped, and counted, when it falls behind).
type Log struct {
	mu      sync.Mutex
	ring    []Entry
	next    int // index the next entry goes to
	full    bool
	pending []Entry       // lines not yet written; nil slice when there is no writer
	writer  bool          // a line writer runs
	stop    chan struct{} // closed by Close
	done    chan struct{}

	dropped atomic.Int64
	// OnDrop, if set, is called for each line dropped (a metric).
	OnDrop func()
}

// New returns a log keeping capacity entries (DefaultCapacity if <= 0) that
// also writes each entry as a JSON line to w, when w is not nil. Close stops
// the writer.
func New(capacity int, w io.Writer) *Log {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	l := &Log{ring: make([]Entry, capacity), done: make(chan struct{})}
	if w == nil {
		close(l.done)
		return l
	}
	l.writer = true
	l.stop = make(chan struct{})
	go func() {
		defer close(l.done)
		// Lines are written in batches every flushEvery rather than one at a
		// time: the relay never wakes another goroutine per statement, and a
		// busy node writes many lines per system call.
		bw := bufio.NewWriterSize(w, 64<<10)
		var line []byte
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		var batch []Entry
		for {
			stopping := false
			select {
			case <-t.C:
			case <-l.stop:
				stopping = true
			}
			l.mu.Lock()
			batch, l.pending = l.pending, batch[:0]
			l.mu.Unlock()
			for i := range batch {
				line = appendLine(line[:0], &batch[i])
				_, _ = bw.Write(line)
			}
			_ = bw.Flush()
			if stopping {
				return
			}
		}
	}()
	return l
}

// flushEvery is how often the line writer writes what accumulated;
// maxPending bounds what may wait for it.
const (
	flushEvery = 100 * time.Millisecond
	maxPending = 16384
)

// Add records an entry.
func (l *Log) Add(e Entry) {
	l.mu.Lock()
	l.ring[l.next] = e
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
	dropped := false
	if l.writer {
		if len(l.pending) < maxPending {
			l.pending = append(l.pending, e)
		} else {
			dropped = true // the log output is behind: drop the line (the ring has it)
		}
	}
	l.mu.Unlock()
	if dropped {
		l.dropped.Add(1)
		if l.OnDrop != nil {
			l.OnDrop()
		}
	}
}

// Dropped counts the JSON lines dropped because the output fell behind.
func (l *Log) Dropped() int64 { return l.dropped.Load() }

// Len is the number of entries held.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.full {
		return len(l.ring)
	}
	return l.next
}

// Query returns the entries matching f, oldest first; with f.Limit, the
// newest f.Limit of them.
func (l *Log) Query(f Filter) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []Entry{}
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	// Walk newest to oldest so a limit stops early, then reverse.
	for i := 0; i < n; i++ {
		e := &l.ring[(l.next-1-i+len(l.ring))%len(l.ring)]
		if !f.match(e) {
			continue
		}
		out = append(out, *e)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Close stops the line writer after it has written what it holds.
func (l *Log) Close() {
	l.mu.Lock()
	if l.writer {
		l.writer = false
		close(l.stop)
	}
	l.mu.Unlock()
	<-l.done
}
