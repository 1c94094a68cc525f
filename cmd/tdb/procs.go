package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// DefaultGCPercent is a node's GOGC unless the environment sets one. Most of
// a node's heap is per-connection state (TLS, the session) that lives as
// long as its connection, and the collector lets the heap grow by this share
// of the live heap before it collects: at Go's 100 an idle session-mode
// client grew a fresh node's RSS by 32 KiB for 12 KiB of live heap. At 50:
// 20-23 KiB (a full bench run and a quick one), with tps at 32 clients -1 to
// +4% and CPU per login +2 to +6% (same-binary rounds). The relay itself
// allocates next to nothing.
const DefaultGCPercent = 50

// maxGCPercent bounds --gc-percent.
const maxGCPercent = 10000

// runtimeFlags adds --procs and --gc-percent to a command that runs a node.
//
// --procs is how many OS threads run Go code at once (GOMAXPROCS). A node
// that shares its machine with PostgreSQL — always the case for `tdb dev` —
// leaves the backend CPU with fewer, but the relay's event loop keeps one for
// itself while it works, so the rest of the node needs another: with one,
// the loop's thread waits for it behind the query log writer and timers
// (pgbench -S -c 1 through `tdb dev` on 2 cores: 0.50-0.79 of direct
// PostgreSQL with 1, 0.84-0.90 with 2).
func runtimeFlags(cmd *cobra.Command, defProcs func() int) {
	n := cmd.Flags().Int("procs", 0, "OS threads running Go code at once (GOMAXPROCS); 0 = the default for this command")
	gc := new(int)
	rangeFlag(cmd, gc, "gc-percent", 0, 0, maxGCPercent,
		"heap growth before a garbage collection, in percent of the live heap (GOGC); 0: GOGC from the environment, else 50",
		fmt.Sprintf("must be a whole number from 0 (GOGC, else %d) to %d", DefaultGCPercent, maxGCPercent))
	cmd.PreRun = func(*cobra.Command, []string) {
		switch {
		case *n > 0:
			runtime.GOMAXPROCS(*n)
		case os.Getenv("GOMAXPROCS") == "" && defProcs != nil:
			runtime.GOMAXPROCS(defProcs())
		}
		switch {
		case *gc > 0:
			debug.SetGCPercent(*gc)
		case os.Getenv("GOGC") == "":
			debug.SetGCPercent(DefaultGCPercent)
		}
	}
}

// halfTheCPUs leaves half the machine to the PostgreSQL beside the node,
// and gives the node at least two (see runtimeFlags).
func halfTheCPUs() int { return max(2, runtime.NumCPU()/2) }
