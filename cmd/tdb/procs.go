package main

import (
	"os"
	"runtime"

	"github.com/spf13/cobra"
)

// procsFlag adds --procs to a command that runs a node: how many OS threads
// run Go code at once (GOMAXPROCS). A node that shares its machine with
// PostgreSQL — always the case for `tdb dev` — relays faster with fewer:
// fewer cross-thread wake-ups per round trip, more CPU left for the backend.
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

// halfTheCPUs leaves half the machine to the PostgreSQL beside the node.
func halfTheCPUs() int { return max(1, runtime.NumCPU()/2) }
