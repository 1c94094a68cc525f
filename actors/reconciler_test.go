package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
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

// testProject is an FSM holding backends (name: URL) and project pid,
// with the function that commits a command to it.
func testProject(tb testing.TB, pid string, backends map[string]string) (*fsm.FSM, *fsmProposer, func(fsm.CommandType, any)) {
	f := fsm.New()
	p := &fsmProposer{f: f}
	apply := func(ct fsm.CommandType, payload any) {
		tb.Helper()
		if _, _, err := p.Apply(context.Background(), ct, payload); err != nil {
			tb.Fatalf("%s: %v", ct, err)
		}
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for name, url := range backends {
		apply(fsm.CmdAddBackend, &fsm.AddBackend{Name: name, URL: url, At: at})
	}
	apply(fsm.CmdCreateProject, &fsm.CreateProject{ID: pid, Name: "test", Salt: []byte("salt"), Iterations: 4096, At: at,
		ProxyKey: fsm.NewKey{ID: "key_project", Name: "p", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeProject,
			StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "l"}})
	return f, p, apply
}

// workspace is the command that creates workspace name of project pid
// (mode tenant) in database db on backend.
func workspace(pid, name, db, backend string) *fsm.CreateWorkspace {
	return &fsm.CreateWorkspace{ProjectID: pid, Name: name, Mode: fsm.ModeTenant, DatabaseType: fsm.TypePostgreSQL,
		Database: &fsm.NewDatabase{Name: db, Backend: backend, Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}}}
}

// TestReconcilerInstallsTheGuardOnUpgrade: a workspace provisioned while
// the cluster could not record guards, whose guard is then gone (as in a
// database provisioned by a build before the guard), gets it installed once
// the cluster's log version records it. A schema of the guard's name that
// the database's own roles made stops the installation, with the reason in
// the log, until it is gone.
func TestReconcilerInstallsTheGuardOnUpgrade(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	db := "guard_" + hex.EncodeToString(b) + "_workspace"
	url := testpg.Shared(t).URL()
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })

	f, p, apply := testProject(t, pid, map[string]string{"local": url})
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", db, "local"))

	ctx, logs := runReconciler(t, &Reconciler{FSM: f, Propose: p, IsLeader: func() bool { return true }, Resync: 50 * time.Millisecond,
		GuardRetry: 50 * time.Millisecond})

	wait := func(what string, ok func(d *fsm.Database) bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := f.WaitFor(wctx, func(s *fsm.State) bool { return ok(s.Databases[db]) }); err != nil {
			t.Fatalf("%s: %v\nlog:\n%s", what, err, logs.String())
		}
	}
	wait("provisioned", func(d *fsm.Database) bool { return d.Status == fsm.StatusReady })

	// A superuser session in the workspace database.
	connect := func() *pgx.Conn {
		t.Helper()
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Database = db
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	su := func(sql string) {
		t.Helper()
		c := connect()
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	guarded := func() bool {
		t.Helper()
		c := connect()
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname = 'tdb_refuse_nested_ddl' AND evtenabled = 'O'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	var guard int
	f.View(func(s *fsm.State) { guard = s.Databases[db].Guard })
	if !guarded() || guard != 0 {
		t.Fatalf("after provisioning at log version 1: guard installed %v, recorded %d (want installed, 0)", guarded(), guard)
	}

	// The database as a build before the guard left it, with a schema of
	// the guard's name that its admin role made.
	su(`DROP EVENT TRIGGER tdb_refuse_nested_ddl`)
	su(`DROP SCHEMA tdb_guard CASCADE`)
	su(`CREATE SCHEMA tdb_guard AUTHORIZATION ` + pgx.Identifier{backend.RoleName(db, backend.RoleAdmin)}.Sanitize())
	apply(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 2})
	deadline := time.Now().Add(30 * time.Second)
	for !logs.Contains("schema tdb_guard exists and is not owned by") {
		if time.Now().After(deadline) {
			t.Fatalf("the foreign schema was not reported; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.View(func(s *fsm.State) { guard = s.Databases[db].Guard })
	if guarded() || guard != 0 {
		t.Fatalf("with a foreign tdb_guard schema: guard installed %v, recorded %d", guarded(), guard)
	}

	su(`DROP SCHEMA tdb_guard`)
	// Below log version 8 the guard is the one before the DDL journal's:
	// a node of an older build would leave the journal's rows behind.
	wait("guard recorded", func(d *fsm.Database) bool { return d.Guard == backend.JournalGuard-1 })
	if !guarded() {
		t.Fatal("the guard was recorded but is not installed")
	}
	journal := func() bool {
		t.Helper()
		c := connect()
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname = 'tdb_journal_ddl'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if journal() {
		t.Fatal("the DDL journal was installed below log version 8")
	}
	apply(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: fsm.LogVersion})
	wait("the journal's guard recorded", func(d *fsm.Database) bool { return d.Guard == backend.GuardVersion })
	if !journal() {
		t.Fatal("the journal's guard was recorded but the journal is not installed")
	}
}

// TestGuardInstallationsDoNotHoldUpProvisioning: guard installations run
// on a worker of their own, so one stuck on a backend that accepts
// connections and never answers does not keep a new workspace waiting
// for the provisioning workers (one here).
func TestGuardInstallationsDoNotHoldUpProvisioning(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	url := testpg.Shared(t).URL()
	fresh := "guard_" + hex.EncodeToString(b) + "_fresh"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, fresh) })

	silent, held := silentBackend(t)

	f, p, apply := testProject(t, pid, map[string]string{
		"local":  url,
		"silent": silent,
	})
	// An old workspace on the silent backend, ready and without a guard
	// (its name sorts before the new one's).
	apply(fsm.CmdCreateWorkspace, workspace(pid, "old", "guard_0_old", "silent"))
	zero := 0
	apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: "guard_0_old", Status: fsm.StatusReady, SchemaVersion: &zero})
	apply(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 2})

	ctx, logs := runReconciler(t, &Reconciler{FSM: f, Propose: p, IsLeader: func() bool { return true }, Workers: 1, Resync: 50 * time.Millisecond,
		StepTimeout: time.Minute})

	freshNotHeldUp(ctx, t, f, apply, held, logs, workspace(pid, "fresh", fresh, "local"), "guard installation")
}

// TestProvisioningStopsWhenNoLongerToDo: a provisioning whose try failed
// tries again only while its node leads and the database is still to be
// provisioned. Here the leader is deposed after the first try and the next
// leader deletes the tenant and drops its database: a second try by the old
// one would make the database again, with nothing left to ever drop it.
func TestProvisioningStopsWhenNoLongerToDo(t *testing.T) {
	const pid = "tdb_0000abcd"
	f, p, apply, url, db, task := failingTenant(t, pid, "orphan")

	var leader atomic.Bool
	leader.Store(true)
	var logs syncbuf.Buffer
	tries := 0
	r := &Reconciler{FSM: f, Propose: p, IsLeader: leader.Load, Attempts: 3, RetryDelay: time.Millisecond,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(&logs, format+"\n", args...)
			if !strings.Contains(format, "provision %s (attempt") {
				return
			}
			if tries++; tries > 1 {
				return
			}
			// Deposed; the next leader deletes the tenant and drops it.
			leader.Store(false)
			apply(fsm.CmdDeleteTenant, &fsm.DeleteTenant{ProjectID: pid, Name: "wayne"})
			if err := backend.Drop(context.Background(), url, db); err != nil {
				t.Errorf("drop: %v", err)
			}
			apply(fsm.CmdRemoveDatabase, &fsm.RemoveDatabase{Name: db})
		}}
	r.defaults()
	r.provision(context.Background(), task)

	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the deposed leader made the dropped database again (%d tries); log:\n%s", tries, logs.String())
	}
}

// TestDropsDoNotHoldUpProvisioning: the drop of a deleted tenant's database
// on a backend that takes connections and never answers (a server gone
// for good, as README's `backends remove` describes) does not keep a new
// workspace on another backend waiting for the workers (one here), pass
// after pass.
func TestDropsDoNotHoldUpProvisioning(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	url := testpg.Shared(t).URL()
	fresh := "drop_" + hex.EncodeToString(b) + "_fresh"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, fresh) })

	silent, held := silentBackend(t)

	f, p, apply := testProject(t, pid, map[string]string{
		"local":  url,
		"silent": silent,
	})
	// A blueprint on the silent backend, ready, and a tenant of it there,
	// deleted.
	apply(fsm.CmdCreateWorkspace, workspace(pid, "old", "drop_0_old", "silent"))
	zero := 0
	apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: "drop_0_old", Status: fsm.StatusReady, SchemaVersion: &zero})
	apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: "gone", Blueprint: "old",
		Database: fsm.NewDatabase{Name: "drop_0_gone", Backend: "silent", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
		Key: fsm.NewKey{ID: "key_gone", Name: "g", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{"gone"},
			StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "lg"}})
	apply(fsm.CmdDeleteTenant, &fsm.DeleteTenant{ProjectID: pid, Name: "gone"})

	ctx, logs := runReconciler(t, &Reconciler{FSM: f, Propose: p, IsLeader: func() bool { return true }, Workers: 1, Resync: 50 * time.Millisecond,
		StepTimeout: time.Minute})

	freshNotHeldUp(ctx, t, f, apply, held, logs, workspace(pid, "fresh", fresh, "local"), "drop")
}

// TestDropsTakeTurns: the drops of a backend that never answers, first in
// name order and as many as there are drop workers (one here), do not
// take the workers pass after pass: the drop of another deleted tenant, on
// a backend that answers, gets its turn and is done.
func TestDropsTakeTurns(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	url := testpg.Shared(t).URL()
	later := "drop_9_" + hex.EncodeToString(b) + "_later"

	silent, _ := silentBackend(t)

	f, p, apply := testProject(t, pid, map[string]string{
		"local":  url,
		"silent": silent,
	})
	zero := 0
	tenant := func(name, db, on string) {
		apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: name, Blueprint: "app",
			Database: fsm.NewDatabase{Name: db, Backend: on, Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
			Key: fsm.NewKey{ID: "key_" + name, Name: name, Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{name},
				StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "l" + name}})
		apply(fsm.CmdDeleteTenant, &fsm.DeleteTenant{ProjectID: pid, Name: name})
	}
	apply(fsm.CmdCreateWorkspace, workspace(pid, "app", "drop_0_app", "silent"))
	apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: "drop_0_app", Status: fsm.StatusReady, SchemaVersion: &zero})
	tenant("gone", "drop_0_gone", "silent")
	tenant("later", later, "local")

	ctx, logs := runReconciler(t, &Reconciler{FSM: f, Propose: p, IsLeader: func() bool { return true }, Workers: 1, Resync: 20 * time.Millisecond,
		StepTimeout: 100 * time.Millisecond})

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := f.WaitFor(wctx, func(s *fsm.State) bool { return s.Databases[later] == nil }); err != nil {
		t.Fatalf("the drop on the backend that answers never had its turn: %v\nlog:\n%s", err, logs.String())
	}
}

// TestDeposedLeaderLeavesProvisioningUnjudged: a leader deposed while its
// last provisioning attempt failed does not mark the database failed: the
// next leader, whose own attempts may well succeed, finishes it, and a
// failure over it would refuse that leader's result.
func TestDeposedLeaderLeavesProvisioningUnjudged(t *testing.T) {
	const pid = "tdb_0000abcd"
	f, p, _, _, db, task := failingTenant(t, pid, "unjudged")

	var leader atomic.Bool
	leader.Store(true)
	var logs syncbuf.Buffer
	r := &Reconciler{FSM: f, Propose: p, IsLeader: leader.Load, Attempts: 1, RetryDelay: time.Millisecond,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(&logs, format+"\n", args...)
			if strings.Contains(format, "provision %s (attempt") {
				leader.Store(false) // deposed during the last attempt
			}
		}}
	r.defaults()
	r.provision(context.Background(), task)

	var status string
	f.View(func(s *fsm.State) { status = s.Databases[db].Status })
	if status != fsm.StatusProvisioning {
		t.Fatalf("the deposed leader recorded %s for the database the next leader is to finish; log:\n%s", status, logs.String())
	}
}

// silentBackend is the URL of a backend that takes connections and never
// answers, and the count of connections it took; they are closed at the
// test's end.
func silentBackend(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held atomic.Int32
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "postgres://postgres@" + ln.Addr().String() + "/postgres?sslmode=disable", &held
}

// freshNotHeldUp waits until the reconciler's stuck work (what) has
// reached the silent backend (held counts its connections), then creates
// the workspace ws on another backend and waits for it to be ready: the
// stuck work must not hold it up.
func freshNotHeldUp(ctx context.Context, t *testing.T, f *fsm.FSM, apply func(fsm.CommandType, any), held *atomic.Int32, logs *syncbuf.Buffer,
	ws *fsm.CreateWorkspace, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %s reached the silent backend; log:\n%s", what, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	apply(fsm.CmdCreateWorkspace, ws)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := f.WaitFor(wctx, func(s *fsm.State) bool { return s.Databases[ws.Database.Name].Status == fsm.StatusReady }); err != nil {
		t.Fatalf("the new workspace waited behind the stuck %s: %v\nlog:\n%s", what, err, logs.String())
	}
}

// runReconciler runs r, logging to the buffer it returns, until the test
// ends; ctx ends then too.
func runReconciler(t *testing.T, r *Reconciler) (context.Context, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	r.Logf = func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) }
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	go func() { defer close(stopped); r.Run(ctx) }()
	return ctx, logs
}

// failingTenant makes project pid with tenant wayne, whose database (named
// after prefix, on the shared server, dropped at the test's end) is to be
// provisioned, and returns the task that provisions it, with a version
// that fails once the database is made.
func failingTenant(t *testing.T, pid, prefix string) (*fsm.FSM, *fsmProposer, func(fsm.CommandType, any), string, string, Task) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	url := testpg.Shared(t).URL()
	db := prefix + "_" + hex.EncodeToString(b) + "_t"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	f, p, apply := testProject(t, pid, map[string]string{"local": url})
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", prefix+"_"+hex.EncodeToString(b)+"_workspace", "local"))
	apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: "wayne", Blueprint: "myapp",
		Database: fsm.NewDatabase{Name: db, Backend: "local", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
		Key: fsm.NewKey{ID: "key_wayne", Name: "w", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{"wayne"},
			StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "lw"}})
	var task Task
	f.View(func(s *fsm.State) {
		for _, tk := range Plan(s) {
			if tk.Database.Name == db {
				task = tk
			}
		}
	})
	task.Versions = []fsm.BlueprintVersion{{Version: 1, Statements: []string{"SELECT 1/0"}}}
	return f, p, apply, url, db, task
}

// TestDeposedLeaderStopsProvisioningInFlight: a provisioning whose backend
// call is still under way when its node stops leading stops there. Here
// the backend holds the call until the next leader has deleted the tenant
// and dropped its database: going on, the old leader would make the
// database and its login roles again, and nothing would ever drop them.
func TestDeposedLeaderStopsProvisioningInFlight(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abcd"
	url := testpg.Shared(t).URL()
	db := "inflight_" + hex.EncodeToString(b) + "_t"
	t.Cleanup(func() { _ = backend.Drop(context.Background(), url, db) })
	held, held0, _, open := heldBackend(t, url)

	f, p, apply := testProject(t, pid, map[string]string{"local": url, "held": held})
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", "inflight_0_workspace", "local"))
	zero := 0
	apply(fsm.CmdSetDatabaseStatus, &fsm.SetDatabaseStatus{Name: "inflight_0_workspace", Status: fsm.StatusReady, SchemaVersion: &zero})
	apply(fsm.CmdCreateTenant, &fsm.CreateTenant{ProjectID: pid, Name: "wayne", Blueprint: "myapp",
		Database: fsm.NewDatabase{Name: db, Backend: "held", Passwords: fsm.RolePasswords{Admin: "a", Write: "w", Read: "r"}},
		Key: fsm.NewKey{ID: "key_wayne", Name: "w", Role: fsm.RoleAdmin, ScopeType: fsm.ScopeTenant, ScopeValues: []string{"wayne"},
			StoredKey: []byte("s"), ServerKey: []byte("k"), Lookup: "lw"}})

	var leader atomic.Bool
	leader.Store(true)
	r := &Reconciler{FSM: f, Propose: p, IsLeader: leader.Load, Resync: 20 * time.Millisecond, LeaderPoll: 10 * time.Millisecond}
	_, logs := runReconciler(t, r)
	deadline := time.Now().Add(30 * time.Second)
	for held0.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the provisioning never reached the backend; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Deposed; the next leader deletes the tenant and drops its database.
	leader.Store(false)
	apply(fsm.CmdDeleteTenant, &fsm.DeleteTenant{ProjectID: pid, Name: "wayne"})
	if err := backend.Drop(context.Background(), url, db); err != nil {
		t.Fatal(err)
	}
	apply(fsm.CmdRemoveDatabase, &fsm.RemoveDatabase{Name: db})

	// The held call goes on once the old leader's work on it has stopped
	// (or, were it never to stop, after a while).
	waitIdle := func() bool {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			r.mu.Lock()
			busy := r.inflight[db]
			r.mu.Unlock()
			if !busy {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	waitIdle()
	open()
	if !waitIdle() {
		t.Fatalf("the provisioning never ended; log:\n%s", logs.String())
	}

	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var dbs, roles int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)", db+"_").Scan(&roles); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || roles != 0 {
		t.Fatalf("the deposed leader made %d database(s) and %d role(s) of the dropped tenant again; log:\n%s", dbs, roles, logs.String())
	}
}

// heldBackend is the URL of a backend that takes connections to the server
// at url and holds them, unanswered, until open is called; then (and from
// then on) it relays them to the server. held counts the connections it
// took, live those their clients have not closed.
func heldBackend(t *testing.T, url string) (u string, held, live *atomic.Int32, open func()) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	upstream := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held, live = &atomic.Int32{}, &atomic.Int32{}
	opened := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	relay := func(c net.Conn) {
		defer wg.Done()
		// The one reader of the client: what it sends waits here until
		// open, and its close is seen while it is held.
		chunks := make(chan []byte, 1024)
		go func() {
			defer close(chunks)
			defer live.Add(-1)
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					chunks <- append([]byte(nil), buf[:n]...)
				}
				if err != nil {
					return
				}
			}
		}()
		<-opened
		u, err := net.Dial("tcp", upstream)
		if err != nil || !track(u) {
			c.Close()
			return
		}
		go func() {
			for b := range chunks {
				if _, err := u.Write(b); err != nil {
					break
				}
			}
			u.Close()
		}()
		_, _ = io.Copy(c, u)
		c.Close()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held.Add(1)
			live.Add(1)
			if !track(c) {
				live.Add(-1)
				continue
			}
			wg.Add(1)
			go relay(c)
		}
	}()
	var once sync.Once
	open = func() { once.Do(func() { close(opened) }) }
	t.Cleanup(func() {
		ln.Close()
		open()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return strings.Replace(url, upstream, ln.Addr().String(), 1), held, live, open
}

// TestReconcilerRecordsAnUnchangedGuardWithoutInstalling: a guard version
// that brings nothing to a kind of database (the journal, to a control
// workspace or a tenant) is recorded without installing it again, which an
// upgrade would otherwise do in every tenant's database; a tenant
// workspace gets it installed.
func TestReconcilerRecordsAnUnchangedGuardWithoutInstalling(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	const pid = "tdb_0000abce"
	control := "guardc_" + hex.EncodeToString(b) + "_workspace"
	tenant := "guardt_" + hex.EncodeToString(b) + "_workspace"
	url := testpg.Shared(t).URL()
	t.Cleanup(func() {
		_ = backend.Drop(context.Background(), url, control)
		_ = backend.Drop(context.Background(), url, tenant)
	})
	f, p, apply := testProject(t, pid, map[string]string{"local": url})
	apply(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 7})
	ctl := workspace(pid, "ctl", control, "local")
	ctl.Mode = fsm.ModeControl
	apply(fsm.CmdCreateWorkspace, ctl)
	apply(fsm.CmdCreateWorkspace, workspace(pid, "myapp", tenant, "local"))
	ctx, logs := runReconciler(t, &Reconciler{FSM: f, Propose: p, IsLeader: func() bool { return true }, Resync: 50 * time.Millisecond,
		GuardRetry: 50 * time.Millisecond})
	waitGuards := func(want int) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := f.WaitFor(wctx, func(s *fsm.State) bool {
			return s.Databases[control].Guard == want && s.Databases[tenant].Guard == want
		}); err != nil {
			t.Fatalf("guards at %d: %v\nlog:\n%s", want, err, logs.String())
		}
	}
	waitGuards(backend.JournalGuard - 1)
	apply(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 8})
	waitGuards(backend.JournalGuard)
	if !logs.Contains(fmt.Sprintf("installed guard version %d in %s", backend.JournalGuard, tenant)) {
		t.Errorf("the tenant workspace's journal guard was not installed:\n%s", logs.String())
	}
	if logs.Contains(fmt.Sprintf("installed guard version %d in %s", backend.JournalGuard, control)) {
		t.Errorf("the control workspace's guard was installed again for a version that brings it nothing:\n%s", logs.String())
	}
}
