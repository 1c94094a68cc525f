// Package syncbuf is a bytes.Buffer that goroutines may write at once: the
// output of processes and loggers that a test reads while they run.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects writes under a lock.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Contains reports whether what was written so far contains sub.
func (s *Buffer) Contains(sub string) bool {
	return strings.Contains(s.String(), sub)
}
