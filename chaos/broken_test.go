package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestChaosCatchesBrokenBuild runs a short chaos scenario against a build
// broken on purpose: TDB_CHAOS_BREAK=stale-login makes every node admit
// logins from its own, possibly stale, FSM (node/hash.go), without the read
// index a login normally takes. Partitioned followers then accept keys the
// majority has revoked, and turn away keys it has created; the harness
// must report it.
func TestChaosCatchesBrokenBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster under faults for half a minute: not under testing.Short")
	}
	var out syncBuffer
	rep, err := chaosRun(context.Background(), runConfig{
		duration: 20 * time.Second, seed: 7, out: t.TempDir(), procfile: "../Procfile",
		faults: []string{faultPartitionFollower}, quiet: 2 * time.Second, hold: 6 * time.Second,
		env: []string{"TDB_CHAOS_BREAK=stale-login"}, stdout: &out,
	})
	if err != nil {
		t.Fatalf("chaos run: %v\n%s", err, out.String())
	}
	t.Logf("%s; %d stale logins; violations: %s", rep.summary(), len(rep.StaleLogins), strings.Join(rep.Violations, "; "))
	if rep.Linearizable && len(rep.StaleLogins) == 0 {
		t.Fatalf("the harness passed a build that admits logins from a stale FSM:\n%s", out.String())
	}
	if len(rep.Faults) == 0 {
		t.Fatalf("no fault was injected:\n%s", out.String())
	}
}
