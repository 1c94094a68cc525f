package pgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Options configure Start.
type Options struct {
	// Dir is the data root: PostgreSQL's data goes in Dir/data, its unix
	// socket in Dir/run, its log in Dir/postgres.log. Created if missing.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 picks one: the port recorded in
	// Dir/port by the previous run when it is free, else a free one.
	Port int
	// Password is the superuser ("postgres") password, set at initdb time.
	// It is saved in Dir/superuser-password (0600); when that file exists
	// its content wins. Empty means a random one.
	Password string
	// Fast trades durability for speed (fsync=off etc.): for tests only.
	Fast bool
	// Logf, when set, receives a line for each lifecycle step.
	Logf func(format string, args ...any)
	// Warnf, when set, receives instead of Logf what the user should hear
	// of even when the steps are not shown: a postmaster found running on
	// the data dir, shut down.
	Warnf func(format string, args ...any)
	// StartTimeout bounds how long Start waits for the server to accept
	// connections (crash recovery included); 0 means 2 minutes.
	StartTimeout time.Duration
	// StopTimeout bounds the fast shutdown before Stop forces an immediate
	// one; 0 means 1 minute.
	StopTimeout time.Duration
	// MaxConnections is PostgreSQL's max_connections; 0 means 300, enough
	// for a few hundred proxied sessions on a development machine.
	MaxConnections int
}

// Server is a running PostgreSQL server started by Start.
type Server struct {
	dir         string
	port        int
	password    string
	logf        func(format string, args ...any)
	stopTimeout time.Duration
	maxConns    int

	proc    *os.Process
	exited  chan struct{} // closed once the postmaster has exited and been reaped
	exitErr error         // valid after exited is closed

	lock *os.File // holds the exclusive flock on Dir/lockFile until Stop

	stopOnce sync.Once
	stopErr  error
}

const (
	superuser        = "postgres"
	passwordFile     = "superuser-password"
	portFile         = "port"
	logFile          = "postgres.log"
	lockFile         = "pgserver.lock"
	maxPortAttempts  = 5
	maxSocketPathLen = 107 // sizeof(sun_path) - 1 on Linux
)

// ErrPortInUse marks a Start that failed because the port was taken (errors.Is).
var ErrPortInUse = errors.New("port already in use")

// Start initializes Options.Dir on first use (initdb), starts PostgreSQL and
// waits until it accepts connections with the superuser password. A server
// left running or crashed by a previous process on the same Dir is stopped
// or cleaned up first. Only one Server may use a Dir at a time: Start holds
// an exclusive lock on it until Stop (the kernel drops it when the process
// dies), and a Start on a Dir that a live Server holds is refused.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("pgserver: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, errors.Wrapf(err, "resolve %s", opts.Dir)
	}
	if strings.ContainsAny(dir, "\"\x00") {
		return nil, errors.Newf("pgserver: data dir %q must not contain a double quote", dir)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	warnf := opts.Warnf
	if warnf == nil {
		warnf = logf
	}
	startTimeout, stopTimeout := opts.StartTimeout, opts.StopTimeout
	if startTimeout <= 0 {
		startTimeout = 2 * time.Minute
	}
	if stopTimeout <= 0 {
		stopTimeout = time.Minute
	}
	ra, err := currentRunAs()
	if err != nil {
		return nil, err
	}
	postgresBin, initdbBin, err := findPair()
	if err != nil {
		return nil, err
	}
	if err := ra.checkTraversable(dir); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, errors.Wrapf(err, "create %s", d)
		}
		if err := ra.own(d); err != nil {
			return nil, err
		}
	}
	// Before anything looks at what a previous process left: a postmaster
	// another live process runs on this dir is no leftover to shut down.
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	locked := false
	defer func() {
		if !locked {
			_ = lock.Close()
		}
	}()
	password, err := loadOrSavePassword(ra, dir, opts.Password)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := ensureInitdb(ctx, ra, initdbBin, dir, opts.Fast, logf); err != nil {
		return nil, err
	}
	if err := clearLeftovers(dir, stopTimeout, logf, warnf); err != nil {
		return nil, err
	}

	for attempt := 0; ; attempt++ {
		port, auto, err := choosePort(dir, opts.Port, attempt)
		if err != nil {
			return nil, err
		}
		maxConns := opts.MaxConnections
		if maxConns <= 0 {
			maxConns = 300
		}
		s := &Server{dir: dir, port: port, password: password, logf: logf, stopTimeout: stopTimeout, maxConns: maxConns}
		err = s.launch(ctx, ra, postgresBin, dataDir, opts.Fast, startTimeout)
		if err == nil {
			if err := writeOwned(ra, filepath.Join(dir, portFile), strconv.Itoa(port)+"\n"); err != nil {
				_ = s.Stop()
				return nil, err
			}
			s.lock, locked = lock, true
			logf("pgserver: PostgreSQL ready on 127.0.0.1:%d (dir %s)", port, dir)
			return s, nil
		}
		if !auto || !errors.Is(err, ErrPortInUse) || attempt == maxPortAttempts-1 {
			return nil, err
		}
		logf("pgserver: port %d was taken meanwhile, trying another", port)
	}
}

// URL is the superuser connection string over TCP.
func (s *Server) URL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, s.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// LocalURL is the superuser connection string a process on this machine
// uses: over the server's Unix socket when it has one (no TCP stack on
// either side: cheaper per message than loopback TCP), else URL.
func (s *Server) LocalURL() string {
	dir := filepath.Join(s.dir, "run")
	if _, err := os.Stat(filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(s.port))); err != nil {
		return s.URL()
	}
	q := url.Values{"host": {dir}, "port": {strconv.Itoa(s.port)}, "sslmode": {"disable"}}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(superuser, s.password), Host: "", Path: "/postgres", RawQuery: q.Encode()}
	return u.String()
}

// Port is the TCP port the server listens on, on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Stop shuts the server down (fast mode: what pg_ctl stop -m fast does:
// sessions are disconnected, a checkpoint is written) and waits for it to
// exit. After StopTimeout it forces an immediate shutdown. It is idempotent;
// it also reports a server that had died on its own.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop()
		if s.lock != nil {
			_ = s.lock.Close()
		}
	})
	return s.stopErr
}

// lockDir takes the exclusive lock of dir, or says which process holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errors.Wrapf(err, "open %s", path)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 32))
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who += " (pid " + pid + ")"
			}
			return nil, errors.Newf("PostgreSQL dir %s is in use by %s: is another tdb running on this data directory?", dir, who)
		}
		return nil, errors.Wrapf(err, "lock %s", path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (s *Server) stop() error {
	select {
	case <-s.exited:
		if s.exitErr != nil {
			return errors.Wrapf(s.exitErr, "postgres (pid %d) had exited before Stop", s.proc.Pid)
		}
		return nil
	default:
	}
	_ = s.proc.Signal(syscall.SIGINT) // fast shutdown
	if s.waitExit(s.stopTimeout) {
		if s.exitErr != nil { // it died by other means meanwhile
			return errors.Wrapf(s.exitErr, "postgres (pid %d) exited", s.proc.Pid)
		}
		s.logf("pgserver: stopped PostgreSQL on port %d", s.port)
		return nil
	}
	_ = s.proc.Signal(syscall.SIGQUIT) // immediate shutdown
	if !s.waitExit(10 * time.Second) {
		_ = s.proc.Kill()
		s.waitExit(10 * time.Second)
	}
	return errors.Newf("postgres (pid %d) did not shut down within %s; forced it", s.proc.Pid, s.stopTimeout)
}

func (s *Server) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.exited:
		return true
	case <-t.C:
		return false
	}
}

// launch runs the postmaster as a child of this process and waits until it
// accepts connections.
func (s *Server) launch(ctx context.Context, ra runAs, bin, dataDir string, fast bool, timeout time.Duration) error {
	logPath := filepath.Join(s.dir, logFile)
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return errors.Wrapf(err, "open %s", logPath)
	}
	if err := ra.own(logPath); err != nil {
		lf.Close()
		return err
	}
	logStart, _ := lf.Seek(0, io.SeekEnd)

	runDir := filepath.Join(s.dir, "run")
	sockets := `"` + runDir + `"`
	if len(runDir)+len("/.s.PGSQL.65535.lock") > maxSocketPathLen {
		s.logf("pgserver: %s is too long for a unix socket path; TCP only", runDir)
		sockets = ""
	}
	args := []string{"-D", dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(s.port),
		"-c", "unix_socket_directories=" + sockets,
		"-c", "shared_buffers=16MB",
		"-c", fmt.Sprintf("max_connections=%d", s.maxConns),
	}
	if fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := ra.command(context.Background(), s.dir, bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Own process group: a terminal's Ctrl-C reaches tdb, which stops the
	// server itself. If this process dies, the postmaster gets SIGINT (fast
	// shutdown) instead of lingering.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT

	s.exited = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking OS thread exits, not the
		// process: keep this thread alive, locked, until postgres exits.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		s.proc = cmd.Process
		started <- nil
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	err = <-started
	lf.Close()
	if err != nil {
		return errors.Wrapf(err, "start %s", bin)
	}
	s.logf("pgserver: started postgres pid %d on port %d", s.proc.Pid, s.port)

	if err := s.waitReady(ctx, timeout); err != nil {
		_ = s.Stop()
		tail := logTail(logPath, logStart)
		if strings.Contains(tail, "Address already in use") {
			err = errors.Mark(err, ErrPortInUse)
		}
		return errors.Wrapf(err, "start PostgreSQL in %s (log %s):\n%s", s.dir, logPath, tail)
	}
	return nil
}

// waitReady polls until the superuser can connect.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(s.URL())
	if err != nil {
		return errors.Wrap(err, "parse server URL")
	}
	cfg.ConnectTimeout = 5 * time.Second
	var lastErr error
	for {
		select {
		case <-s.exited:
			return errors.Newf("postgres exited during startup: %v", s.exitErr)
		default:
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "28P01" {
			return errors.Newf("the superuser password in %s does not match the server's: %v",
				filepath.Join(s.dir, passwordFile), err)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return errors.Wrapf(lastErr, "not accepting connections after %s", timeout)
		case <-s.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ensureInitdb creates the cluster in dir/data unless it already exists. A
// data dir without PG_VERSION is a half-done initdb and is redone.
func ensureInitdb(ctx context.Context, ra runAs, initdbBin, dir string, fast bool, logf func(string, ...any)) error {
	dataDir := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return errors.Wrapf(err, "remove incomplete %s", dataDir)
	}
	args := []string{"-D", dataDir, "-U", superuser, "--pwfile=" + filepath.Join(dir, passwordFile),
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-instructions"}
	if fast {
		args = append(args, "--no-sync")
	}
	logf("pgserver: initdb %s", dataDir)
	cmd := ra.command(ctx, dir, initdbBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return errors.Wrapf(err, "initdb %s:\n%s", dataDir, out.String())
	}
	return nil
}

// loadOrSavePassword returns the password in dir's password file, or saves
// (and returns) want, or a random one when want is empty.
func loadOrSavePassword(ra runAs, dir, want string) (string, error) {
	path := filepath.Join(dir, passwordFile)
	b, err := os.ReadFile(path)
	if err == nil {
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", errors.Newf("%s is empty", path)
		}
		return pw, nil
	}
	if !os.IsNotExist(err) {
		return "", errors.Wrapf(err, "read %s", path)
	}
	if want == "" {
		var r [16]byte
		_, _ = rand.Read(r[:])
		want = hex.EncodeToString(r[:])
	}
	if strings.ContainsAny(want, "\x00\r\n") {
		return "", errors.New("pgserver: the superuser password must not contain NUL or line breaks")
	}
	return want, writeOwned(ra, path, want+"\n")
}

// writeOwned writes a 0600 file owned by the PostgreSQL OS user.
func writeOwned(ra runAs, path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return errors.Wrapf(err, "write %s", path)
	}
	if err := ra.own(tmp); err != nil {
		return err
	}
	return errors.Wrapf(os.Rename(tmp, path), "write %s", path)
}

// choosePort returns the port to try; auto says whether it may be replaced
// by another if it turns out to be taken.
func choosePort(dir string, fixed, attempt int) (port int, auto bool, err error) {
	if fixed != 0 {
		return fixed, false, nil
	}
	if attempt == 0 {
		if p := RecordedPort(dir); p != 0 && portFree(p) {
			return p, true, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, false, errors.Wrap(err, "pick a free port on 127.0.0.1")
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, true, nil
}

// RecordedPort is the port the last server started on dir listened on (0
// when none is recorded).
func RecordedPort(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, portFile))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || p <= 0 || p >= 65536 {
		return 0
	}
	return p
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// logTail returns the last lines the log got since offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
