package evloop

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadNice reads the niceness of thread tid of this process; ok is false
// once the thread is gone.
func threadNice(t *testing.T, tid int) (nice int, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	n, err := strconv.Atoi(f[16]) // field 19 of stat(5): nice
	if err != nil {
		t.Fatalf("stat of thread %d: %q", tid, b)
	}
	return n, true
}

// TestLoopNice: Options.Nice applies to the loop's own thread only, and that
// thread ends with the loop, so no other goroutine ever runs at its niceness.
func TestLoopNice(t *testing.T) {
	l, err := New(Options{Nice: 7}) // raising niceness needs no privilege
	if err != nil {
		t.Fatal(err)
	}
	if err := l.NiceErr(); err != nil {
		t.Fatal(err)
	}
	if n, ok := threadNice(t, l.tid); !ok || n != 7 {
		t.Fatalf("loop thread %d: nice %d (present %v), want 7", l.tid, n, ok)
	}
	runtime.LockOSThread() // a thread of this test's own: not the loop's
	defer runtime.UnlockOSThread()
	if n, _ := threadNice(t, unix.Gettid()); n != 0 {
		t.Fatalf("another thread took the loop's niceness: %d", n)
	}
	l.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The runtime never hands a thread a locked goroutine left to
		// another: it ends it (the process's main thread it parks for good).
		if _, ok := threadNice(t, l.tid); !ok || l.tid == os.Getpid() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop thread %d still runs after Close", l.tid)
		}
		time.Sleep(10 * time.Millisecond)
	}

	plain := newLoop(t)
	if n, _ := threadNice(t, plain.tid); n != 0 || plain.NiceErr() != nil {
		t.Fatalf("a loop without Options.Nice runs at nice %d (%v)", n, plain.NiceErr())
	}
}
