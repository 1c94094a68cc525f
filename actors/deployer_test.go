package actors

import (
	"fmt"
	"testing"
	"time"

	"tdb/fsm"
)

// deployState is an FSM with blueprint myapp at versions versions, tenants
// tenants of it (t00000, …) whose databases are ready at version 1 but for
// the first provisioning ones, and deployment dep_1 of the last version to
// all of them, concurrency conc.
func deployState(tb testing.TB, tenants, versions, provisioning, conc int) *fsm.FSM {
	const pid = "tdb_0000abcd"
	f, _, apply := testProject(tb, pid, map[string]string{"local": "postgres://postgres@127.0.0.1:1/postgres"})
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", "db_ws", "local"))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v := 1; v <= versions; v++ {
		apply(fsm.CmdAddBlueprintVersion, &fsm.AddBlueprintVersion{ProjectID: pid, Workspace: "myapp", At: at,
			Statements: []string{fmt.Sprintf("CREATE TABLE t%d (id int)", v)}, Checksum: fmt.Sprint(v), KeyID: "key_project"})
	}
	names := make([]string, tenants)
	one := 1
	for i := range names {
		names[i] = fmt.Sprintf("t%05d", i)
		db := "db_" + names[i]
		apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: names[i], Blueprint: "myapp", At: at,
			Database: fsm.NewDatabase{Name: db, Backend: "local", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
			Key:      fsm.NewKey{ID: "key_" + names[i], Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{names[i]}, StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "l" + names[i]}})
		if i >= provisioning {
			apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: db, Status: fsm.StatusReady, SchemaVersion: &one})
		}
	}
	apply(fsm.CmdCreateDeployment, &fsm.CreateDeployment{ID: "dep_1", ProjectID: pid, Blueprint: "myapp", Version: versions,
		Tenants: names, Concurrency: conc, KeyID: "key_project", At: at})
	return f
}

// TestPlanDeploymentFillsTheRoomOnly: the deployer plans, after every change
// of the state, only as many tenants as its concurrency has room for (and
// those that wait for their database, which take none), not all of them.
func TestPlanDeploymentFillsTheRoomOnly(t *testing.T) {
	f := deployState(t, 50, 3, 2, 4)
	plan := func(inflight map[string]bool) (tenants []string, startable int) {
		f.View(func(s *fsm.State) {
			jobs, conc, finished := planDeployment(s, "dep_1", inflight)
			if finished || conc != 4 {
				t.Fatalf("finished %v, concurrency %d", finished, conc)
			}
			for _, j := range jobs {
				tenants = append(tenants, j.Tenant)
				if !j.Wait {
					startable++
					if len(j.Versions) != 2 || j.From != 1 {
						t.Fatalf("job %+v", j)
					}
				}
			}
		})
		return tenants, startable
	}
	if tenants, n := plan(map[string]bool{}); n != 4 || len(tenants) != 6 || tenants[0] != "t00000" || tenants[5] != "t00005" {
		t.Fatalf("nothing in flight: %v, %d startable", tenants, n)
	}
	if tenants, n := plan(map[string]bool{"t00002": true, "t00003": true, "t00004": true}); n != 1 || len(tenants) != 3 || tenants[2] != "t00005" {
		t.Fatalf("three in flight: %v, %d startable", tenants, n)
	}
	if tenants, _ := plan(map[string]bool{"t00002": true, "t00003": true, "t00004": true, "t00005": true}); len(tenants) != 0 {
		t.Fatalf("no room: %v", tenants)
	}
}

// BenchmarkPlanDeployment is one planning pass of a deployment to 10,000
// tenants, 50 versions, concurrency 10, as the deployer makes it after
// every change of the state (twice per tenant at least).
//
//	go test -run XXX -bench PlanDeployment -benchmem ./actors
func BenchmarkPlanDeployment(b *testing.B) {
	f := deployState(b, 10000, 50, 0, 10)
	inflight := map[string]bool{}
	b.ResetTimer()
	for range b.N {
		f.View(func(s *fsm.State) { planDeployment(s, "dep_1", inflight) })
	}
}
