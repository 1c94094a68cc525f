package pgserver_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tdb/internal/pgserver"
	"tdb/internal/testpg"
)

const helperEnv = "PGSERVER_TEST_HELPER_DIR"

// TestKilledParent plays `tdb dev` being killed with SIGKILL: a child
// process starts a server and is killed; the postmaster must shut down
// rather than linger, and a new Start on the same dir must work.
func TestKilledParent(t *testing.T) {
	if dir := os.Getenv(helperEnv); dir != "" {
		if _, err := pgserver.Start(context.Background(), pgserver.Options{Dir: dir}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		select {}
	}
	t.Parallel()
	dir := filepath.Join(testpg.TempDir(t), "pg")
	cmd := osexec.Command(os.Args[0], "-test.run=^TestKilledParent$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	pid := postmasterPID(t, dir)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("postmaster %d still running 30s after its parent was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := start(t, pgserver.Options{Dir: dir})
	exec(t, s.URL(), "select 1")
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
