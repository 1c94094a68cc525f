package main

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNetSimPartition: a proxy names the process that dialled it from
// /proc, and isolating that process's node cuts its connections (open and
// new) while another process still gets through; heal lets it in again.
func TestNetSimPartition(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, sc.Text())
				}
			}()
		}
	}()
	// Two "nodes": shells that dial the proxy with bash's /dev/tcp and
	// echo a line through it every 100 ms, printing what comes back.
	var mu sync.Mutex
	pids := map[int]string{}
	sim := newNetSim(func() map[int]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(pids)
	})
	defer sim.close()
	p, err := sim.addProxy("dst", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(p.Addr())
	script := fmt.Sprintf(`sleep 0.3; while true; do if exec 3<>/dev/tcp/%s/%s; then while echo ping >&3 && read -t 1 line <&3; do echo "$line"; sleep 0.1; done; fi; echo cut; sleep 0.1; done`, host, port)
	start := func(name string) *bufio.Scanner {
		cmd := exec.Command("bash", "-c", script)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		mu.Lock()
		pids[cmd.Process.Pid] = name
		mu.Unlock()
		return bufio.NewScanner(out)
	}
	a := start("a")
	b := start("b")
	expect := func(sc *bufio.Scanner, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == want {
				return
			}
			if time.Now().After(deadline) {
				break
			}
		}
		t.Fatalf("never read %q", want)
	}
	expect(a, "ping")
	expect(b, "ping")
	sim.isolate("a", []string{"a", "dst"})
	expect(a, "cut")
	// a stays cut: what it reads next is "cut" again, never "ping".
	for range 5 {
		if !a.Scan() || strings.TrimSpace(a.Text()) != "cut" {
			t.Fatalf("isolated a read %q", a.Text())
		}
	}
	expect(b, "ping")
	sim.heal()
	expect(a, "ping")
}

// TestNetSimUnidentifiedDiallerIsCut: a dialler the proxy could not name
// does not pass into a node while any of that node's links is cut (it may
// be the node cut off); into a node with no cut link it passes.
func TestNetSimUnidentifiedDiallerIsCut(t *testing.T) {
	sim := newNetSim(func() map[int]string { return nil })
	sim.isolate("a", []string{"a", "b", "c"})
	for _, tt := range []struct {
		src, node string
		want      bool
	}{{"", "b", true}, {"", "a", true}, {"c", "b", false}, {"a", "b", true}, {"", "d", false}} {
		if got := sim.cut(tt.src, tt.node); got != tt.want {
			t.Errorf("cut(%q, %q) = %v, want %v", tt.src, tt.node, got, tt.want)
		}
	}
	sim.heal()
	if sim.cut("", "b") {
		t.Error("an unidentified dialler is cut after heal")
	}
}
