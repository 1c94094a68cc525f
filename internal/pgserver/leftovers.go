package pgserver

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
)

// clearLeftovers deals with what a previous process may have left: a
// postmaster still running on this data dir (tdb was killed) is shut down; a
// postmaster.pid or socket lock whose process is gone (or is now some other
// process with the same pid) is removed, so PostgreSQL does not refuse to start.
// The shutdown is told to warnf.
func clearLeftovers(dir string, stopTimeout time.Duration, logf, warnf func(string, ...any)) error {
	dataDir := filepath.Join(dir, "data")
	pidPath := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(pidPath)
	if err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		pid, _ := strconv.Atoi(strings.TrimSpace(first))
		if pid > 0 && isPostmasterOf(pid, dataDir) {
			warnf("a PostgreSQL (postmaster pid %d) is running on %s, from a previous run or started by hand; shutting it down", pid, dataDir)
			_ = syscall.Kill(pid, syscall.SIGINT)
			if !waitGone(pid, stopTimeout) {
				_ = syscall.Kill(pid, syscall.SIGQUIT)
				if !waitGone(pid, 10*time.Second) {
					return errors.Newf("postmaster pid %d on %s does not stop", pid, dataDir)
				}
			}
		} else {
			logf("pgserver: removing stale %s (pid %d is gone)", pidPath, pid)
		}
		if err := os.Remove(pidPath); err != nil && !os.IsNotExist(err) {
			return errors.Wrapf(err, "remove stale %s", pidPath)
		}
	} else if !os.IsNotExist(err) {
		return errors.Wrapf(err, "read %s", pidPath)
	}
	// Children of a postmaster killed with SIGKILL exit on their own soon
	// after; until then they hold its shared memory and a new postmaster
	// refuses to start.
	if err := waitOrphans(dataDir, logf); err != nil {
		return err
	}
	locks, _ := filepath.Glob(filepath.Join(dir, "run", ".s.PGSQL.*"))
	for _, l := range locks {
		_ = os.Remove(l)
	}
	return nil
}

// isPostmasterOf reports whether pid is a live process whose working
// directory is dataDir (the postmaster chdirs there).
func isPostmasterOf(pid int, dataDir string) bool {
	if !alive(pid) {
		return false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		want = dataDir
	}
	return cwd == want
}

// waitOrphans waits for processes still working in dataDir (the
// postmaster's children chdir there too) to exit, then forces them.
func waitOrphans(dataDir string, logf func(string, ...any)) error {
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		want = dataDir
	}
	deadline := time.Now().Add(15 * time.Second)
	for signalled := 0; ; {
		pids := procsIn(want)
		if len(pids) == 0 {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return errors.Newf("processes %v of a previous server on %s do not exit", pids, dataDir)
		}
		if (signalled == 0 && left < 10*time.Second) || (signalled == 1 && left < 5*time.Second) {
			sig := []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL}[signalled]
			logf("pgserver: sending %v to leftover processes %v of %s", sig, pids, dataDir)
			for _, pid := range pids {
				_ = syscall.Kill(pid, sig)
			}
			signalled++
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procsIn lists live processes whose working directory is dir.
func procsIn(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == dir && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may contain spaces and parens.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !alive(pid)
}
