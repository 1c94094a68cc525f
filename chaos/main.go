package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
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
