package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/syncbuf"
	"tdb/internal/testpg"
)

// fencedCluster is a fresh cluster ID, whose leader fence on the server
// at url is dropped when t ends.
func fencedCluster(t *testing.T, url string) string {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		role := backend.Fence{Cluster: id}.RoleName()
		if _, err := c.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	return id
}

// waitLog waits until logs holds one of texts, and returns it.
func waitLog(t *testing.T, logs *syncbuf.Buffer, texts ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range texts {
			if strings.Contains(logs.String(), s) {
				return s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("none of %q in the log:\n%s", texts, logs.String())
	return ""
}

// serverCount runs a count query on the server at url.
func serverCount(t *testing.T, url, sql string, args ...any) int {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFrozenLeaderIsRefusedByTheBackend: a leader frozen while its
// provisioning's backend call is under way still takes itself for the
// leader as it resumes (its IsLeader stays true, its state stops where it
// froze). Meanwhile the next leader, of a later term, provisioned the
// tenant, deleted it and dropped its database. The frozen leader's call,
// let through only then, is refused by the backend's fence: it makes
// neither the database nor its roles again, and records no failure.
func TestFrozenLeaderIsRefusedByTheBackend(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	url := testpg.Shared(t).URL()
	db := "frozen_" + hex.EncodeToString(b) + "_t"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	cluster := fencedCluster(t, url)
	held, held0, _, open := heldBackend(t, url)

	// The tenant's backend "held" is the same server for both leaders; the
	// frozen one reaches it through the relay that holds its call.
	state := func(heldURL string) (*fsm.FSM, *fsmProposer, func(fsm.CommandType, any)) {
		f, p, apply := testProject(t, pid, map[string]string{"local": url, "held": heldURL})
		apply(fsm.CmdSetClusterID, &fsm.SetClusterID{ID: cluster})
		apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", "frozen_0_workspace", "local"))
		zero := 0
		apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: "frozen_0_workspace", Status: fsm.StatusReady, SchemaVersion: &zero})
		apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: "wayne", Blueprint: "myapp",
			Database: fsm.NewDatabase{Name: db, Backend: "held", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
			Key: fsm.NewKey{ID: "key_wayne", Name: "w", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{"wayne"},
				StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "lw"}})
		return f, p, apply
	}
	leads := func() bool { return true }
	f1, p1, _ := state(held)
	old := &Reconciler{FSM: f1, Propose: p1, IsLeader: leads, Term: func() uint64 { return 1 },
		Resync: 20 * time.Millisecond, LeaderPoll: 10 * time.Millisecond}
	_, oldLogs := runReconciler(t, old)
	deadline := time.Now().Add(30 * time.Second)
	for held0.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the provisioning never reached the backend; log:\n%s", oldLogs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The next leader provisions the tenant, deletes it and drops it.
	f2, p2, apply2 := state(url)
	ctx, _ := runReconciler(t, &Reconciler{FSM: f2, Propose: p2, IsLeader: leads, Term: func() uint64 { return 2 },
		Resync: 20 * time.Millisecond, LeaderPoll: 10 * time.Millisecond})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f2.WaitFor(wctx, func(s *fsm.State) bool { return s.Databases[db].Status == fsm.StatusReady }); err != nil {
		t.Fatalf("the next leader's provisioning: %v", err)
	}
	apply2(fsm.CmdDeleteTenant, &fsm.DeleteTenant{ProjectID: pid, Name: "wayne"})
	if err := f2.WaitFor(wctx, func(s *fsm.State) bool { return s.Databases[db] == nil }); err != nil {
		t.Fatalf("the next leader's drop: %v", err)
	}

	// The frozen leader resumes.
	open()
	var status string
	for time.Now().Before(deadline.Add(30 * time.Second)) {
		f1.View(func(s *fsm.State) { status = s.Databases[db].Status })
		if status != fsm.StatusProvisioning || strings.Contains(oldLogs.String(), "a later leader acts on the backend") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	dbs := serverCount(t, url, "SELECT count(*) FROM pg_database WHERE datname = $1", db)
	roles := serverCount(t, url, "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)", db+"_")
	if dbs != 0 || roles != 0 {
		t.Fatalf("the frozen leader made %d database(s) and %d role(s) of the dropped tenant again; log:\n%s", dbs, roles, oldLogs.String())
	}
	if status != fsm.StatusProvisioning || !strings.Contains(oldLogs.String(), "backend fenced by leader term 2: this node's term 1 is over") {
		t.Fatalf("the frozen leader's provisioning: status %s, want it left provisioning, refused by the fence; log:\n%s", status, oldLogs.String())
	}
}

// TestFrozenLeadersDeploymentIsTerminated: a deployment statement of a
// leader frozen mid-statement (its IsLeader stays true) is terminated on
// the backend as soon as the next leader, of a later term, first acts on
// it; the frozen leader then records no failure for the tenant, which the
// next leader deploys again.
func TestFrozenLeadersDeploymentIsTerminated(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	url := testpg.Shared(t).URL()
	db := "frozen_" + hex.EncodeToString(b) + "_t"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	cluster := fencedCluster(t, url)
	if err := backend.Ensure(context.Background(), url, backend.DatabaseSpec{Name: db, Kind: backend.KindTenant,
		Passwords: backend.Passwords{Admin: "a", Write: "w", Read: "r"}}); err != nil {
		t.Fatal(err)
	}

	f, p, apply := testProject(t, pid, map[string]string{"local": url})
	apply(fsm.CmdSetClusterID, &fsm.SetClusterID{ID: cluster})
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", "frozen_0_workspace", "local"))
	zero := 0
	apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: "frozen_0_workspace", Status: fsm.StatusReady, SchemaVersion: &zero})
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sleep := fmt.Sprintf("SELECT pg_sleep(600) /* %s */", db)
	apply(fsm.CmdAddBlueprintVersion, &fsm.AddBlueprintVersion{ProjectID: pid, Workspace: "myapp", At: at,
		Statements: []string{sleep}, Checksum: "1", KeyID: "key_project"})
	apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: "wayne", Blueprint: "myapp", At: at,
		Database: fsm.NewDatabase{Name: db, Backend: "local", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
		Key: fsm.NewKey{ID: "key_wayne", Name: "w", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{"wayne"},
			StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "lw"}})
	apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: db, Status: fsm.StatusReady, SchemaVersion: &zero})
	apply(fsm.CmdCreateDeployment, &fsm.CreateDeployment{ID: "dep_1", ProjectID: pid, Blueprint: "myapp", Version: 1,
		Tenants: []string{"wayne"}, Concurrency: 1, KeyID: "key_project", At: at})

	logs := &syncbuf.Buffer{}
	d := &Deployer{LeaderActor: LeaderActor{FSM: f, Propose: p, IsLeader: func() bool { return true }, Term: func() uint64 { return 1 },
		Logf:   func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) },
		Resync: 20 * time.Millisecond, LeaderPoll: 10 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	go func() { defer close(stopped); d.Run(ctx) }()

	sleeping := func() int {
		return serverCount(t, url, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query = $2 AND state = 'active'", db, sleep)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sleeping() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the deployment never ran its statement; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The next leader's first work on the backend.
	if _, err := backend.Ping(backend.WithFence(context.Background(), backend.Fence{Cluster: cluster, Term: 2}), url); err != nil {
		t.Fatal(err)
	}
	if n := sleeping(); n != 0 {
		t.Fatalf("the frozen leader's statement still runs after the next leader acted on the backend; log:\n%s", logs.String())
	}
	const stopped2 = "stopped, a later leader acts on its backend"
	if got := waitLog(t, logs, stopped2, "failed at version"); got != stopped2 {
		t.Fatalf("the frozen leader recorded its terminated statement as the tenant's failure; log:\n%s", logs.String())
	}
	f.View(func(s *fsm.State) {
		if r := s.Deployments["dep_1"].Results[0]; r.Status != fsm.TenantRunning {
			t.Fatalf("tenant result %+v, want running", r)
		}
	})
}

// TestLeaderTermCarriesItsFence: the term's context carries the raft term
// it began in, ends when raft's term moves on under a node that still
// leads (lost and won again between two polls), and starts ended when the
// node no longer leads once the term is read. Without a cluster ID it
// carries no fence, until the ID is recorded.
func TestLeaderTermCarriesItsFence(t *testing.T) {
	var leader atomic.Bool
	var term atomic.Uint64
	var cluster atomic.Value
	leader.Store(true)
	term.Store(5)
	cluster.Store("00112233445566778899aabbccddeeff")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	l := startLeaderTerm(ctx, &wg, leader.Load, func() backend.Fence {
		return backend.Fence{Cluster: cluster.Load().(string), Term: term.Load()}
	}, nil, 5*time.Millisecond)
	ended := func(c context.Context, what string) {
		t.Helper()
		select {
		case <-c.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("the term's context did not end %s", what)
		}
	}

	c := l.context(ctx)
	if f, ok := backend.FenceOf(c); !ok || f.Term != 5 || c.Err() != nil {
		t.Fatalf("first term: fence %+v %v, err %v", f, ok, c.Err())
	}
	term.Store(7)
	ended(c, "when raft's term moved on")
	c = l.context(ctx)
	if f, ok := backend.FenceOf(c); !ok || f.Term != 7 || c.Err() != nil {
		t.Fatalf("second term: fence %+v %v, err %v", f, ok, c.Err())
	}

	leader.Store(false)
	ended(c, "when the node stopped leading")
	if c = l.context(ctx); c.Err() == nil {
		t.Fatal("a term read while the node does not lead began live")
	}

	leader.Store(true)
	cluster.Store("")
	if c = l.context(ctx); c.Err() != nil {
		t.Fatal(c.Err())
	}
	if f, ok := backend.FenceOf(c); ok {
		t.Fatalf("without a cluster ID: fence %+v", f)
	}
	// A new cluster's first leader records the ID during its term.
	cluster.Store("ffeeddccbbaa99887766554433221100")
	ended(c, "when the cluster's ID was recorded")
	c = l.context(ctx)
	if f, ok := backend.FenceOf(c); !ok || f.Cluster != "ffeeddccbbaa99887766554433221100" || f.Term != 7 {
		t.Fatalf("after the ID was recorded: fence %+v %v", f, ok)
	}
}

// TestFencedGuardInstallationIsNotPaused: a guard installation a later
// leader's fence refused does not hold this node's next try back for
// GuardRetry, as a failure would: its term is over, and were it to lead
// again it installs the guard at once.
func TestFencedGuardInstallationIsNotPaused(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	url := testpg.Shared(t).URL()
	db := "fencedguard_" + hex.EncodeToString(b) + "_workspace"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	cluster := fencedCluster(t, url)
	if err := backend.Ensure(context.Background(), url, backend.DatabaseSpec{Name: db, Kind: backend.KindWorkspace,
		Passwords: backend.Passwords{Admin: "a", Write: "w", Read: "r"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.Ping(backend.WithFence(context.Background(), backend.Fence{Cluster: cluster, Term: 2}), url); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	r := &Reconciler{FSM: fsm.New(), Propose: &fsmProposer{f: fsm.New()}, IsLeader: func() bool { return true },
		Logf: func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) }}
	r.defaults()
	ctx := backend.WithFence(context.Background(), backend.Fence{Cluster: cluster, Term: 1})
	r.guard(ctx, Task{Kind: "guard", Database: fsm.Database{Name: db, Kind: fsm.KindWorkspace, Status: fsm.StatusReady},
		Backend: fsm.Backend{Name: "local", URL: url}, Guard: backend.GuardVersion})
	if !r.guardDue(db) {
		t.Fatalf("the next try of a fenced off guard installation waits GuardRetry; log:\n%s", logs.String())
	}
}
