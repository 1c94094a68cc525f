package actors

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"tdb/fsm"
	"tdb/internal/syncbuf"
	"tdb/internal/testpg"
)

// TestDeposedLeaderStopsImportInFlight: a tenant's copy still under way
// when its node stops leading stops there, though the deposed node, cut
// off from the log, sees no change of the state. Here the backend holds
// the copy while the next leader copies that import and then a newer one,
// and the tenant's application writes a row: going on, the old leader's
// copy would empty the tables and put the older import's rows back.
func TestDeposedLeaderStopsImportInFlight(t *testing.T) {
	const pid = "tdb_0000abcd"
	ctx := context.Background()
	src, plan := plannedSource(t)
	ten := tenantOf(t, src)
	url := testpg.Shared(t).URL()
	held, took, live, open := heldBackend(t, url)

	f, p, apply := testProject(t, pid, map[string]string{"held": held})
	apply(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 3}) // copies record themselves
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", "import_0_workspace", "held"))
	apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: "acme", Blueprint: "myapp",
		Database: fsm.NewDatabase{Name: ten.db, Backend: "held", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
		Key: fsm.NewKey{ID: "key_acme", Name: "a", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{"acme"},
			StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "la"}})
	one := 1
	for _, db := range []string{"import_0_workspace", ten.db} {
		apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: db, Status: fsm.StatusReady, SchemaVersion: &one})
	}
	apply(fsm.CmdCreateImport, &fsm.CreateImport{ID: "imp_first", ProjectID: pid, Workspace: "myapp", SourceURL: src,
		RoutingField: "tenant_id", Tables: plan.Tables, Tenants: []fsm.ImportTenantSpec{{Tenant: "acme", Value: "acme"}}})

	var leader atomic.Bool
	leader.Store(true)
	var logs syncbuf.Buffer
	m := &Importer{Copy: fastApply, LeaderActor: LeaderActor{FSM: f, Propose: p, IsLeader: leader.Load,
		Resync: time.Hour, LeaderPoll: 10 * time.Millisecond,
		Logf: func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }}}
	rctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	go func() { defer close(stopped); m.Run(rctx) }()

	until := func(what string, ok func() bool) bool {
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
		return true
	}
	if !until("copy held", func() bool { return took.Load() > 0 }) {
		t.Fatalf("the copy never reached the backend; log:\n%s", logs.String())
	}

	// Deposed. The next leader copies the import, then a newer one, and
	// the tenant's application writes a row.
	leader.Store(false)
	job := ImportJob{Import: "imp_first", Tenant: "acme", Value: "acme", SourceURL: src, BackendURL: url, Database: ten.db,
		Tables: plan.Tables, Mark: true}
	for _, id := range []string{"imp_first", "imp_second"} {
		job.Import = id
		if rows, err := copyTenant(ctx, fastApply, job); err != nil || rows != 8 {
			t.Fatalf("copy %s: %d rows, %v", id, rows, err)
		}
	}
	su := ten.superuser()
	defer su.Close(ctx)
	if _, err := su.Exec(ctx, "INSERT INTO users (tenant_id, email) VALUES ('acme', 'new@acme')"); err != nil {
		t.Fatal(err)
	}

	// The held copy goes on once the old leader has let go of it (or,
	// were it never to, after a while), and is over when it closes.
	until("copy let go", func() bool { return live.Load() == 0 })
	open()
	if !until("copy over", func() bool { return live.Load() == 0 }) {
		t.Fatalf("the old leader's copy never ended; log:\n%s", logs.String())
	}

	var users int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		t.Fatal(err)
	}
	if m := ten.marker(); users != 3 || m != "tdb:schema_version=1;done=0;import=imp_second/8" {
		t.Fatalf("after the old leader's copy: %d users (want the 2 copied and the one written since), marker %q; log:\n%s",
			users, m, logs.String())
	}
}
