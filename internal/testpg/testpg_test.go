package testpg_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/internal/pgserver"
	"tdb/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

func query1(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select 1").Scan(&n); err != nil {
		t.Fatalf("select 1: %v", err)
	}
	return n
}

func TestNewIsCleanedUp(t *testing.T) {
	t.Parallel()
	var srv *pgserver.Server
	var dir string
	t.Run("use", func(t *testing.T) {
		srv = testpg.New(t)
		dir = testpg.TempDir(t)
		if n := query1(t, srv.URL()); n != 1 {
			t.Fatalf("select 1 = %d", n)
		}
	})
	// The subtest's cleanups have run: server stopped, directories gone.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir %s still exists after cleanup (err %v)", dir, err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port())))
	if err == nil {
		c.Close()
		t.Errorf("server still accepts connections on port %d after cleanup", srv.Port())
	}
}

func TestSharedIsOnePerBinary(t *testing.T) {
	t.Parallel()
	a, b := testpg.Shared(t), testpg.Shared(t)
	if a != b {
		t.Fatalf("Shared returned two servers: ports %d and %d", a.Port(), b.Port())
	}
	if n := query1(t, a.URL()); n != 1 {
		t.Fatalf("select 1 = %d", n)
	}
}

func TestTempDirIsReachable(t *testing.T) {
	t.Parallel()
	dir := testpg.TempDir(t)
	for p := dir; p != filepath.Dir(p); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Errorf("%s is mode %v: others cannot traverse it", p, fi.Mode().Perm())
		}
	}
}
