package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
)

type upConfig struct {
	procfile string
	build    bool
	only     []string // process names; empty: all
	out      io.Writer
	grace    time.Duration // SIGTERM to SIGKILL (default 15 s)
}

// up runs the Procfile's processes until ctx ends or all have exited.
func up(ctx context.Context, cfg upConfig) error {
	if cfg.grace <= 0 {
		cfg.grace = 15 * time.Second
	}
	f, err := os.Open(cfg.procfile)
	if err != nil {
		return errors.Wrap(err, "open Procfile")
	}
	procs, err := ParseProcfile(f)
	f.Close()
	if err != nil {
		return err
	}
	procs, err = selectProcs(procs, cfg.only)
	if err != nil {
		return err
	}
	out := &prefixer{w: cfg.out}
	for _, p := range procs {
		out.width = max(out.width, len(p.Name))
	}
	if cfg.build {
		out.line("chaos", "go build -o bin/tdb ./cmd/tdb")
		b := exec.CommandContext(ctx, "go", "build", "-o", "bin/tdb", "./cmd/tdb")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return errors.Wrap(err, "build bin/tdb")
		}
	}

	var wg sync.WaitGroup
	running := make([]*proc, 0, len(procs))
	for _, p := range procs {
		cmd := exec.Command("sh", "-c", p.Command)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group: signals reach its children
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			pw.Close()
			out.line(p.Name, fmt.Sprintf("failed to start: %v", err))
			continue
		}
		out.line(p.Name, fmt.Sprintf("started (pid %d): %s", cmd.Process.Pid, p.Command))
		pc := &proc{cmd: cmd}
		running = append(running, pc)
		wg.Add(2)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				out.line(p.Name, sc.Text())
			}
			_, _ = io.Copy(io.Discard, pr)
			pc.outputDone.Store(true)
		}()
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			pc.exited.Store(true)
			pw.Close()
			status := "exited"
			if err != nil {
				status = err.Error()
			}
			out.line(p.Name, status)
		}()
	}
	if len(running) == 0 {
		return errors.New("no process started")
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	out.line("chaos", "stopping (SIGTERM)")
	signalAll(running, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(cfg.grace):
		out.line("chaos", fmt.Sprintf("still running after %s: SIGKILL", cfg.grace))
		signalAll(running, syscall.SIGKILL)
		<-done
	}
	return nil
}

func selectProcs(procs []Process, only []string) ([]Process, error) {
	if len(only) == 0 {
		return procs, nil
	}
	byName := map[string]Process{}
	for _, p := range procs {
		byName[p.Name] = p
	}
	var out []Process
	for _, name := range only {
		p, ok := byName[name]
		if !ok {
			return nil, errors.Newf("no process %q in the Procfile", name)
		}
		out = append(out, p)
	}
	return out, nil
}

// proc is a started process.
type proc struct {
	cmd        *exec.Cmd
	exited     atomic.Bool // the shell was reaped
	outputDone atomic.Bool // every process of the group closed its output
}

// signalAll signals each process's group. The group is signalled even when
// its shell has exited: the command it started may still be running (the
// pipe being open says so).
func signalAll(procs []*proc, sig syscall.Signal) {
	for _, p := range procs {
		if !p.exited.Load() || !p.outputDone.Load() {
			_ = syscall.Kill(-p.cmd.Process.Pid, sig)
		}
	}
}

// prefixer writes whole lines prefixed with a padded process name.
type prefixer struct {
	mu    sync.Mutex
	w     io.Writer
	width int
}

func (p *prefixer) line(name, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s%s | %s\n", name, strings.Repeat(" ", max(0, p.width-len(name))), text)
}
