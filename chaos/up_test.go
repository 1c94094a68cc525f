package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tdb/internal/syncbuf"
)

// TestUp runs a Procfile: output is prefixed per process, a process that
// exits is reported while the others go on, and cancelling stops the rest,
// SIGKILLing one that ignores SIGTERM.
func TestUp(t *testing.T) {
	dir := t.TempDir()
	procfile := filepath.Join(dir, "Procfile")
	err := os.WriteFile(procfile, []byte(`
short: echo hello from short
long: echo long is up; sleep 60
stubborn: trap '' TERM; echo stubborn is up; while true; do sleep 0.1; done
unused: echo never
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- up(ctx, upConfig{procfile: procfile, only: []string{"short", "long", "stubborn"}, out: &out, grace: 500 * time.Millisecond})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !(strings.Contains(out.String(), "long     | long is up") &&
		strings.Contains(out.String(), "stubborn | stubborn is up") &&
		strings.Contains(out.String(), "short    | exited")) {
		if time.Now().After(deadline) {
			t.Fatalf("processes did not start; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("up did not stop; output:\n%s", out.String())
	}
	got := out.String()
	for _, want := range []string{"short    | hello from short", "long     | signal: terminated", "stubborn | signal: killed", "SIGKILL"} {
		if !strings.Contains(got, want) {
			t.Fatalf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "never") {
		t.Fatalf("ran a process that was not asked for:\n%s", got)
	}
}
