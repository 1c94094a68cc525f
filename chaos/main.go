package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: go run ./chaos <command>

commands:
  up [-f Procfile] [-build=true] [name ...]   run the Procfile's processes (all, or the named ones)
  run [--duration 60s] [--seed N] [--out DIR]  a chaos run: the Procfile's cluster under faults and load,
                                               then the checks; exits 1 on any violation
                                               (--faults, --quiet, --hold, --bin, --keep, -f: see run -h)

A bare "go run ./chaos --duration 60s" is "run".
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		args = append([]string{"run"}, args...)
	}
	switch args[0] {
	case "run":
		cfg, err := parseRunFlags(args[1:], stderr)
		if err != nil {
			return 2
		}
		cfg.stdout = stdout
		return runAndReport(ctx, cfg, stdout, stderr)
	case "up":
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		fs.SetOutput(stderr)
		procfile := fs.String("f", "Procfile", "the Procfile to run")
		build := fs.Bool("build", true, "build bin/tdb (go build -o bin/tdb ./cmd/tdb) first")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if err := up(ctx, upConfig{procfile: *procfile, build: *build, only: fs.Args(), out: stdout}); err != nil {
			fmt.Fprintf(stderr, "chaos up: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "chaos: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

// runAndReport runs a chaos scenario, prints its faults, violations and
// summary line, and returns the exit status: 0 when every check passed.
func runAndReport(ctx context.Context, cfg runConfig, stdout, stderr io.Writer) int {
	rep, err := chaosRun(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "chaos run: %v\n", err)
		if rep == nil {
			return 1
		}
	}
	fmt.Fprintf(stdout, "faults (%d):\n", len(rep.Faults))
	for _, f := range rep.Faults {
		fmt.Fprintf(stdout, "  %7.2fs–%7.2fs  %-18s %s (%s)\n", f.At.Seconds(), f.Healed.Seconds(), f.Kind, f.Node, f.Role)
	}
	kinds := slices.Sorted(maps.Keys(rep.Counts))
	for _, k := range kinds {
		var parts []string
		for _, o := range slices.Sorted(maps.Keys(rep.Counts[k])) {
			parts = append(parts, fmt.Sprintf("%s %d", o, rep.Counts[k][o]))
		}
		fmt.Fprintf(stdout, "ops %-13s %s\n", k, strings.Join(parts, ", "))
	}
	fmt.Fprintf(stdout, "bans: %d attacker IPs refused with 53300; ban tables identical: %v\n", len(rep.BannedIPs), rep.BansIdentical)
	if sr := rep.Schema; sr != nil {
		printSchema(stdout, sr)
	}
	for _, line := range rep.LostDetail {
		fmt.Fprintf(stdout, "lost: %s\n", line)
	}
	for _, op := range rep.StaleLogins {
		fmt.Fprintf(stdout, "stale login: key %s accepted on %s at %.3fs–%.3fs after its revocation was acknowledged\n",
			op.Subject, op.Node, op.Call.Seconds(), op.Return.Seconds())
	}
	for subject, ops := range rep.Illegal {
		fmt.Fprintf(stdout, "not linearizable: %s\n", subject)
		for _, op := range ops {
			fmt.Fprintf(stdout, "  %8.3fs–%8.3fs %-13s on %s: %s %s\n", op.Call.Seconds(), op.Return.Seconds(), op.Kind, op.Node, op.Outcome, op.Detail)
		}
	}
	for _, v := range rep.Violations {
		fmt.Fprintf(stdout, "VIOLATION: %s\n", v)
	}
	fmt.Fprintf(stdout, "report: %s\n", rep.Out)
	fmt.Fprintln(stdout, rep.summary())
	if len(rep.Violations) > 0 || err != nil {
		return 1
	}
	return 0
}
