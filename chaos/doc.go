// Command chaos is the chaos harness of tdb. `go run ./chaos up` reads the
// Procfile at the repo root, builds bin/tdb, and runs every process (or
// the ones named) with its output prefixed by the process name, until
// Ctrl-C, which stops them all (SIGTERM, then SIGKILL after a grace period).
// A process that exits is reported; the others keep running, so a node can
// be killed and restarted by hand during a run.
package main
