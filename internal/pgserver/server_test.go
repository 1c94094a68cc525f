package pgserver_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/internal/pgserver"
	"tdb/internal/testpg"
)

// start starts a server; Fast unless the test says durable.
func start(t *testing.T, opts pgserver.Options) *pgserver.Server {
	t.Helper()
	opts.Logf = t.Logf
	s, err := pgserver.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func exec(t *testing.T, url, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, url, table string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStartStopRestartKeepsDataAndPassword(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testpg.TempDir(t), "pg")
	const pw = "it's a p@ss/word:%?"
	s := start(t, pgserver.Options{Dir: dir, Password: pw, Fast: true})
	if !strings.Contains(s.URL(), "127.0.0.1:"+strconv.Itoa(s.Port())) {
		t.Errorf("URL %s does not name port %d", s.URL(), s.Port())
	}
	exec(t, s.URL(), "create table kept (v text); insert into kept values ('x')")
	// LocalURL reaches the same server over its Unix socket.
	if !strings.Contains(s.LocalURL(), "host=%2F") {
		t.Fatalf("LocalURL %s is not a Unix socket URL", s.LocalURL())
	}
	if n := count(t, s.LocalURL(), "pg_stat_activity where pid = pg_backend_pid() and client_addr is null"); n != 1 {
		t.Fatalf("LocalURL %s did not connect over the Unix socket", s.LocalURL())
	}

	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != u.Uid {
			t.Errorf("data dir owned by uid %d, want the postgres user (%s)", uid, u.Uid)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "superuser-password"))
	if err != nil || strings.TrimSpace(string(b)) != pw {
		t.Errorf("superuser-password file = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "superuser-password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("superuser-password mode: %v %v", fi.Mode(), err)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := pgx.Connect(context.Background(), s.URL()); err == nil {
		t.Fatal("connected after Stop")
	}

	// The password file wins over a different Options.Password.
	s2 := start(t, pgserver.Options{Dir: dir, Password: "something else", Fast: true})
	if s2.Port() != s.Port() {
		t.Errorf("restart picked port %d, want the recorded free port %d", s2.Port(), s.Port())
	}
	if s2.URL() != s.URL() {
		t.Errorf("restart URL %s, want %s", s2.URL(), s.URL())
	}
	if n := count(t, s2.URL(), "kept"); n != 1 {
		t.Errorf("after restart kept has %d rows, want 1", n)
	}
}

func TestRestartAfterCrash(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testpg.TempDir(t), "pg")
	// Durable, as tdb dev runs it: Fast's synchronous_commit=off may lose
	// the last commits on a crash.
	s := start(t, pgserver.Options{Dir: dir})
	exec(t, s.URL(), "create table kept (v text); insert into kept values ('x')")
	// LocalURL reaches the same server over its Unix socket.
	if !strings.Contains(s.LocalURL(), "host=%2F") {
		t.Fatalf("LocalURL %s is not a Unix socket URL", s.LocalURL())
	}
	if n := count(t, s.LocalURL(), "pg_stat_activity where pid = pg_backend_pid() and client_addr is null"); n != 1 {
		t.Fatalf("LocalURL %s did not connect over the Unix socket", s.LocalURL())
	}
	pid := postmasterPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err == nil {
		t.Error("Stop of a killed server reported no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); err != nil {
		t.Fatalf("expected a stale postmaster.pid after kill -9: %v", err)
	}
	s2 := start(t, pgserver.Options{Dir: dir})
	if n := count(t, s2.URL(), "kept"); n != 1 {
		t.Errorf("after crash restart kept has %d rows, want 1", n)
	}
}

// A server still running from a previous process (tdb was killed, its
// postmaster not yet) is taken over: shut down and started again.
func TestStartOverRunningServer(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testpg.TempDir(t), "pg")
	s1 := start(t, pgserver.Options{Dir: dir, Fast: true})
	exec(t, s1.URL(), "create table kept (v text)")
	old := postmasterPID(t, dir)
	pgserver.DropLock(s1) // its process is gone, its postmaster not
	var warned []string
	s2 := start(t, pgserver.Options{Dir: dir, Fast: true, Warnf: func(f string, a ...any) { warned = append(warned, fmt.Sprintf(f, a...)) }})
	if pid := postmasterPID(t, dir); pid == old {
		t.Fatalf("postmaster pid unchanged (%d)", pid)
	}
	// Said even where the lifecycle steps are not shown (tdb dev).
	if len(warned) != 1 || !strings.Contains(warned[0], fmt.Sprintf("postmaster pid %d) is running on", old)) {
		t.Fatalf("the shutdown of the running server was told as %q", warned)
	}
	if err := s1.Stop(); err != nil {
		t.Errorf("Stop of the replaced server: %v", err)
	}
	if n := count(t, s2.URL(), "kept"); n != 0 {
		t.Errorf("kept has %d rows, want 0", n)
	}
}

// A second Start on a Dir that a live Server uses (a second tdb dev on the
// same data dir) is refused, and the first server is left running: it used
// to take the first one's postmaster for a leftover and shut it down.
func TestSecondStartOnDirInUseRefused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testpg.TempDir(t), "pg")
	s1 := start(t, pgserver.Options{Dir: dir, Fast: true})
	pid := postmasterPID(t, dir)
	s2, err := pgserver.Start(context.Background(), pgserver.Options{Dir: dir, Fast: true, Logf: t.Logf})
	if err == nil {
		_ = s2.Stop()
		t.Fatal("a second Start on a dir in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another") {
		t.Errorf("second Start: %v; want an error saying the dir is in use", err)
	}
	if p := postmasterPID(t, dir); p != pid {
		t.Errorf("postmaster pid changed from %d to %d", pid, p)
	}
	exec(t, s1.URL(), "select 1")
	// Once the first server is stopped, the dir is free again.
	if err := s1.Stop(); err != nil {
		t.Fatal(err)
	}
	s3 := start(t, pgserver.Options{Dir: dir, Fast: true})
	exec(t, s3.URL(), "select 1")
}

func TestRecordedPortTakenPicksAnother(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testpg.TempDir(t), "pg")
	s := start(t, pgserver.Options{Dir: dir, Fast: true})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// The recorded port is now one this test holds (rather than the freed
	// one, which anyone may take meanwhile).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if err := os.WriteFile(filepath.Join(dir, "port"), []byte(strconv.Itoa(busy)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, pgserver.Options{Dir: dir, Fast: true})
	if s2.Port() == busy {
		t.Fatalf("restart reused busy port %d", busy)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "port"))
	if strings.TrimSpace(string(b)) != strconv.Itoa(s2.Port()) {
		t.Errorf("port file says %q, want %d", b, s2.Port())
	}

	// An explicit port that is busy is an error, not silently replaced.
	s2.Stop()
	_, err = pgserver.Start(context.Background(), pgserver.Options{Dir: dir, Port: busy, Fast: true})
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Start on a busy explicit port: %v", err)
	}
}

func TestFindBin(t *testing.T) {
	for _, name := range []string{"initdb", "postgres"} {
		p, err := pgserver.FindBin(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("FindBin(%q) = %s, not an executable (%v)", name, p, err)
		}
	}
	if _, err := pgserver.FindBin("no-such-postgres-program"); err == nil {
		t.Error("FindBin of a missing program returned no error")
	}
}

func TestUntraversableParentIsAClearError(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("TDB_REQUIRE_ALL") != "" {
			t.Fatal("TDB_REQUIRE_ALL is set but this test needs root (CI runs as root)")
		}
		t.Skip("only root runs PostgreSQL as another user (TDB_REQUIRE_ALL=1 makes this a failure)")
	}
	t.Parallel()
	closed := filepath.Join(testpg.TempDir(t), "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := pgserver.Start(context.Background(), pgserver.Options{Dir: filepath.Join(closed, "pg"), Fast: true})
	if err == nil || !strings.Contains(err.Error(), closed+" (mode -rwx------) is not traversable") {
		t.Fatalf("Start under a 0700 root dir: %v", err)
	}
}
