package main

import (
	"runtime/debug"
	"testing"

	"github.com/spf13/cobra"
)

// TestGCPercent: a node runs at --gc-percent, else at GOGC from the
// environment, else at DefaultGCPercent.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, tc := range []struct {
		args []string
		env  string
		want int
	}{
		{nil, "", DefaultGCPercent},
		{[]string{"--gc-percent", "80"}, "", 80},
		{[]string{"--gc-percent", "80"}, "120", 80},
		{nil, "120", 100}, // GOGC is the runtime's own business: left as it is
	} {
		t.Setenv("GOGC", tc.env)
		debug.SetGCPercent(100)
		cmd := &cobra.Command{Use: "node"}
		runtimeFlags(cmd, nil)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		cmd.PreRun(cmd, nil)
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("%v with GOGC=%q: GC percent %d, want %d", tc.args, tc.env, got, tc.want)
		}
	}
}
