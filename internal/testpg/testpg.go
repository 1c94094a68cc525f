package testpg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"tdb/internal/pgserver"
)

// New starts a throwaway server for t, stopped and deleted when t ends. When
// t has failed, the end of the server's log is printed.
func New(t testing.TB) *pgserver.Server {
	t.Helper()
	dir := TempDir(t)
	s, err := pgserver.Start(context.Background(), pgserver.Options{Dir: filepath.Join(dir, "pg"), Fast: true})
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("testpg: stop: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "pg", "postgres.log")); err == nil {
				t.Logf("testpg: end of postgres.log:\n%s", tail(b, 4096))
			}
		}
	})
	return s
}

// TempDir returns a new empty directory, removed when t ends, that the
// PostgreSQL OS user can reach. t.TempDir() cannot be used for PostgreSQL
// data when tests run as root: its parents are 0700 and owned by root.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := mkTempDir()
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("testpg: %v", err)
		}
	})
	return dir
}

func mkTempDir() (string, error) {
	dir, err := os.MkdirTemp("", "testpg-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

var shared struct {
	once sync.Once
	dir  string
	srv  *pgserver.Server
	err  error
}

// Shared returns the test binary's shared server, starting it on first use.
// The package's TestMain must call Main so that it is stopped and deleted.
func Shared(t testing.TB) *pgserver.Server {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = mkTempDir()
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = pgserver.Start(context.Background(),
			pgserver.Options{Dir: filepath.Join(shared.dir, "pg"), Fast: true})
	})
	if shared.err != nil {
		t.Fatalf("testpg: shared server: %v", shared.err)
	}
	return shared.srv
}

// Main runs the tests, then stops and deletes the shared server (if one was
// started) and exits. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testpg: stop shared server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
