package main

import (
	"os"
	"runtime"

	"github.com/spf13/cobra"
)

// procsFlag adds --procs to a command that runs a node: how many OS threads
// run Go code at once (GOMAXPROCS). A node that shares its machine with
// PostgreSQL — always the case for `tdb dev` — leaves the backend CPU with
// fewer, but the relay's event loop keeps one for itself while it works, so
// the rest of the node needs another: with one, the loop's thread waits for
// it behind the query log writer and timers (pgbench -S -c 1 through
// `tdb dev` on 2 cores: 0.50-0.79 of direct PostgreSQL with 1, 0.84-0.90 with 2).
func procsFlag(cmd *cobra.Command, def func() int) *int {
	n := cmd.Flags().Int("procs", 0, "OS threads running Go code at once (GOMAXPROCS); 0 = the default for this command")
	cmd.PreRun = func(*cobra.Command, []string) {
		switch {
		case *n > 0:
			runtime.GOMAXPROCS(*n)
		case os.Getenv("GOMAXPROCS") == "" && def != nil:
			runtime.GOMAXPROCS(def())
		}
	}
	return n
}

// halfTheCPUs leaves half the machine to the PostgreSQL beside the node,
// and gives the node at least two (see procsFlag).
func halfTheCPUs() int { return max(2, runtime.NumCPU()/2) }
