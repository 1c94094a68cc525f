package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// harness applies commands to an FSM the way raft would.
type harness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newHarness(t *testing.T) *harness { return &harness{t: t, f: New()} }

func (h *harness) apply(ct CommandType, payload any) Response {
	h.t.Helper()
	data, err := Encode(ct, payload)
	if err != nil {
		h.t.Fatalf("encode %s: %v", ct, err)
	}
	h.index++
	return h.f.Apply(&raft.Log{Type: raft.LogCommand, Index: h.index, Data: data}).(Response)
}

func (h *harness) mustApply(ct CommandType, payload any) any {
	h.t.Helper()
	r := h.apply(ct, payload)
	if r.Err != nil {
		h.t.Fatalf("%s: %v", ct, r.Err)
	}
	return r.Value
}

func newKey(id, role, scope string, values ...string) NewKey {
	return NewKey{ID: id, Name: id, Role: role, ScopeType: scope, ScopeValues: values,
		StoredKey: []byte("stored-" + id), ServerKey: []byte("server-" + id), Lookup: "lookup-" + id}
}

func newDB(name string) NewDatabase {
	return NewDatabase{Name: name, Backend: "local", Passwords: RolePasswords{Admin: "a", Write: "w", Read: "r"}}
}

// seeded returns a harness with a backend, a project, a tenant workspace and a tenant.
func seeded(t *testing.T) *harness {
	h := newHarness(t)
	h.mustApply(CmdAddBackend, &AddBackend{Name: "local", URL: "postgres://postgres@127.0.0.1:1/postgres", At: t0})
	h.mustApply(CmdCreateProject, &CreateProject{ID: "tdb_0000abcd", Name: "demo", Salt: []byte("salt"), Iterations: 4096, At: t0,
		ProxyKey: newKey("key_project", RoleAdmin, ScopeProject)})
	h.mustApply(CmdCreateWorkspace, &CreateWorkspace{ProjectID: "tdb_0000abcd", Name: "myapp", Mode: ModeTenant,
		DatabaseType: TypePostgreSQL, At: t0, Database: ptr(newDB("p0000abcd__myapp_workspace"))})
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: "tdb_0000abcd", Name: "wayne", Blueprint: "myapp", At: t0,
		Database: newDB("p0000abcd__myapp__wayne"), Key: newKey("key_wayne", RoleAdmin, ScopeTenant, "wayne")})
	return h
}

func ptr[T any](v T) *T { return &v }

func codeOf(err error) Code {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return ""
}

func TestCommands(t *testing.T) {
	const pid = "tdb_0000abcd"
	tests := []struct {
		name string
		cmd  CommandType
		in   any
		code Code // expected business failure, "" for success
	}{
		{"duplicate project id", CmdCreateProject, &CreateProject{ID: pid, Name: "other", ProxyKey: newKey("k2", RoleAdmin, ScopeProject)}, CodeConflict},
		{"duplicate project name", CmdCreateProject, &CreateProject{ID: "tdb_ffffffff", Name: "demo", ProxyKey: newKey("k2", RoleAdmin, ScopeProject)}, CodeConflict},
		{"second project", CmdCreateProject, &CreateProject{ID: "tdb_ffffffff", Name: "two", ProxyKey: newKey("k2", RoleAdmin, ScopeProject)}, ""},
		{"workspace bad name", CmdCreateWorkspace, &CreateWorkspace{ProjectID: pid, Name: "Bad", Mode: ModeTenant, DatabaseType: TypePostgreSQL, Database: ptr(newDB("x"))}, CodeBadRequest},
		{"workspace double underscore", CmdCreateWorkspace, &CreateWorkspace{ProjectID: pid, Name: "a__b", Mode: ModeTenant, DatabaseType: TypePostgreSQL, Database: ptr(newDB("x"))}, CodeBadRequest},
		{"workspace duplicate", CmdCreateWorkspace, &CreateWorkspace{ProjectID: pid, Name: "myapp", Mode: ModeTenant, DatabaseType: TypePostgreSQL, Database: ptr(newDB("x"))}, CodeConflict},
		{"workspace bad mode", CmdCreateWorkspace, &CreateWorkspace{ProjectID: pid, Name: "w2", Mode: "weird", DatabaseType: TypePostgreSQL, Database: ptr(newDB("x"))}, CodeBadRequest},
		{"workspace unknown backend", CmdCreateWorkspace, &CreateWorkspace{ProjectID: pid, Name: "w2", Mode: ModeTenant, DatabaseType: TypePostgreSQL, Database: &NewDatabase{Name: "x", Backend: "nope", Passwords: RolePasswords{"a", "b", "c"}}}, CodeBadRequest},
		{"mysql workspace has no database", CmdCreateWorkspace, &CreateWorkspace{ProjectID: pid, Name: "mysql_test", Mode: ModeTenant, DatabaseType: TypeMySQL}, ""},
		{"workspace unknown project", CmdCreateWorkspace, &CreateWorkspace{ProjectID: "tdb_99999999", Name: "w2", Mode: ModeTenant, DatabaseType: TypePostgreSQL, Database: ptr(newDB("x"))}, CodeNotFound},
		{"tenant duplicate", CmdCreateTenant, &CreateTenant{ProjectID: pid, Name: "wayne", Blueprint: "myapp", Database: newDB("y"), Key: newKey("k3", RoleAdmin, ScopeTenant, "wayne")}, CodeConflict},
		{"tenant unknown blueprint", CmdCreateTenant, &CreateTenant{ProjectID: pid, Name: "globex", Blueprint: "nope", Database: newDB("y"), Key: newKey("k3", RoleAdmin, ScopeTenant, "globex")}, CodeNotFound},
		{"tenant key wrong scope", CmdCreateTenant, &CreateTenant{ProjectID: pid, Name: "globex", Blueprint: "myapp", Database: newDB("y"), Key: newKey("k3", RoleAdmin, ScopeProject)}, CodeBadRequest},
		{"tenant ok", CmdCreateTenant, &CreateTenant{ProjectID: pid, Name: "globex", Blueprint: "myapp", Database: newDB("y"), Key: newKey("k3", RoleAdmin, ScopeTenant, "globex")}, ""},
		{"key bad role", CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("k4", "root", ScopeProject)}, CodeBadRequest},
		{"key unknown tenant", CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("k4", RoleRead, ScopeTenant, "nobody")}, CodeNotFound},
		{"key project with values", CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("k4", RoleRead, ScopeProject, "x")}, CodeBadRequest},
		{"key ok", CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("k4", RoleRead, ScopeTenant, "wayne")}, ""},
		{"key duplicate id", CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("key_wayne", RoleRead, ScopeTenant, "wayne")}, CodeConflict},
		{"revoke unknown", CmdRevokeKey, &RevokeKey{ProjectID: pid, ID: "nope"}, CodeNotFound},
		{"revoke ok", CmdRevokeKey, &RevokeKey{ProjectID: pid, ID: "key_wayne", At: t0}, ""},
		{"backend duplicate", CmdAddBackend, &AddBackend{Name: "local", URL: "postgres://x"}, CodeConflict},
		{"settings negative", CmdUpdateWorkspaceSettings, &UpdateWorkspaceSettings{ProjectID: pid, Name: "myapp", MaxConnections: ptr(int64(-1))}, CodeBadRequest},
		{"settings ok", CmdUpdateWorkspaceSettings, &UpdateWorkspaceSettings{ProjectID: pid, Name: "myapp", MaxConnections: ptr(int64(5))}, ""},
		{"cluster settings bad", CmdSetClusterSettings, &SetClusterSettings{BanSec: ptr(int64(0))}, CodeBadRequest},
		{"cluster settings ok", CmdSetClusterSettings, &SetClusterSettings{BanSec: ptr(int64(30))}, ""},
		{"status unknown db", CmdSetDatabaseStatus, &SetDatabaseStatus{Name: "nope", Status: StatusReady}, CodeNotFound},
		{"status bad value", CmdSetDatabaseStatus, &SetDatabaseStatus{Name: "p0000abcd__myapp__wayne", Status: "weird"}, CodeBadRequest},
		{"status ok", CmdSetDatabaseStatus, &SetDatabaseStatus{Name: "p0000abcd__myapp__wayne", Status: StatusReady}, ""},
		{"version ok", CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: pid, Workspace: "myapp", Statements: []string{"CREATE TABLE t (id int)"}}, ""},
		{"version empty", CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: pid, Workspace: "myapp"}, CodeBadRequest},
		{"remove db not deleting", CmdRemoveDatabase, &RemoveDatabase{Name: "p0000abcd__myapp__wayne"}, CodeConflict},
		{"delete unknown tenant", CmdDeleteTenant, &DeleteTenant{ProjectID: pid, Name: "nobody"}, CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := seeded(t)
			before, _ := h.f.Hash()
			r := h.apply(tc.cmd, tc.in)
			if got := codeOf(r.Err); got != tc.code {
				t.Fatalf("code = %q (err %v), want %q", got, r.Err, tc.code)
			}
			after, _ := h.f.Hash()
			if tc.code != "" && before != after {
				t.Fatalf("a failed command changed the state")
			}
			if tc.code == "" && before == after {
				t.Fatalf("a successful command left the state unchanged")
			}
		})
	}
}

func TestResolve(t *testing.T) {
	h := seeded(t)
	h.mustApply(CmdCreateWorkspace, &CreateWorkspace{ProjectID: "tdb_0000abcd", Name: "controlplane", Mode: ModeControl,
		DatabaseType: TypePostgreSQL, At: t0, Database: ptr(newDB("p0000abcd__controlplane_workspace"))})
	tests := []struct {
		name, db   string
		ok         bool
		tenant     string
		physical   string
		kind       string
		wantWSName string
	}{
		{"tenant", "myapp__wayne", true, "wayne", "p0000abcd__myapp__wayne", KindTenant, "myapp"},
		{"workspace", "myapp_workspace", true, "", "p0000abcd__myapp_workspace", KindWorkspace, "myapp"},
		{"control", "controlplane_workspace", true, "", "p0000abcd__controlplane_workspace", KindControl, "controlplane"},
		{"unknown tenant", "myapp__globex", false, "", "", "", ""},
		{"tenant of other blueprint", "controlplane__wayne", false, "", "", "", ""},
		{"bare name", "myapp", false, "", "", "", ""},
		{"postgres", "postgres", false, "", "", "", ""},
		{"triple underscore", "myapp___wayne", false, "", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tg Target
			var ok bool
			h.f.View(func(s *State) { tg, ok = s.Resolve("tdb_0000abcd", tc.db) })
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if tg.Workspace.Name != tc.wantWSName || tg.Database.Name != tc.physical || tg.Database.Kind != tc.kind {
				t.Fatalf("resolved to %s/%s/%s", tg.Workspace.Name, tg.Database.Name, tg.Database.Kind)
			}
			if (tg.Tenant == nil) != (tc.tenant == "") || (tg.Tenant != nil && tg.Tenant.Name != tc.tenant) {
				t.Fatalf("tenant = %+v, want %q", tg.Tenant, tc.tenant)
			}
		})
	}
}

func TestDeleteTenantRevokesItsKeys(t *testing.T) {
	h := seeded(t)
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: "tdb_0000abcd", Name: "globex", Blueprint: "myapp", At: t0,
		Database: newDB("p0000abcd__myapp__globex"), Key: newKey("key_globex", RoleAdmin, ScopeTenant, "globex")})
	h.mustApply(CmdCreateKey, &CreateKey{ProjectID: "tdb_0000abcd", Key: newKey("key_both", RoleRead, ScopeTenant, "wayne", "globex")})
	h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: "tdb_0000abcd", Name: "wayne", At: t0})
	h.f.View(func(s *State) {
		p := s.Project("tdb_0000abcd")
		if p.Keys["key_wayne"].Live() {
			t.Fatal("the deleted tenant's own key is still live")
		}
		if k := p.Keys["key_both"]; !k.Live() || len(k.ScopeValues) != 1 || k.ScopeValues[0] != "globex" {
			t.Fatalf("shared key = %+v, want live and scoped to globex only", k)
		}
		if s.Databases["p0000abcd__myapp__wayne"].Status != StatusDeleting {
			t.Fatal("database not marked deleting")
		}
	})
	if r := h.apply(CmdSetDatabaseStatus, &SetDatabaseStatus{Name: "p0000abcd__myapp__wayne", Status: StatusReady}); codeOf(r.Err) != CodeConflict {
		t.Fatalf("a late provisioning result overrode the deletion: %v", r.Err)
	}
	h.mustApply(CmdRemoveDatabase, &RemoveDatabase{Name: "p0000abcd__myapp__wayne"})
	h.f.View(func(s *State) {
		if s.Project("tdb_0000abcd").Tenants["wayne"] != nil || s.Databases["p0000abcd__myapp__wayne"] != nil {
			t.Fatal("tenant or database still present after removal")
		}
	})
}

// restored is a new FSM restored from a snapshot of h's.
func (h *harness) restored() *FSM {
	h.t.Helper()
	snap, err := h.f.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		h.t.Fatal(err)
	}
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		h.t.Fatal(err)
	}
	return g
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := seeded(t)
	h.mustApply(CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: "tdb_0000abcd", Workspace: "myapp", Statements: []string{"CREATE TABLE a (id int)"}, At: t0})
	want, _ := h.f.Hash()
	g := h.restored()
	got, _ := g.Hash()
	if got != want {
		t.Fatalf("restored hash %s != %s", got, want)
	}
	if g.AppliedIndex() != h.index {
		t.Fatalf("applied index %d, want %d", g.AppliedIndex(), h.index)
	}
	g.View(func(s *State) {
		if k := s.KeyByLookup("lookup-key_wayne"); k == nil || k.ID != "key_wayne" {
			t.Fatal("lookup index not rebuilt after restore")
		}
	})
}

func TestDeterministicReplicas(t *testing.T) {
	a, b := seeded(t), seeded(t)
	ha, _ := a.f.Hash()
	hb, _ := b.f.Hash()
	if ha != hb {
		t.Fatal("replicas applying the same log diverged")
	}
}

func TestCorruptEntryPanics(t *testing.T) {
	for _, data := range [][]byte{[]byte("{"), []byte(`{"t":999,"p":{}}`), []byte(`{"t":1,"p":"x"}`)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("entry %q applied without panic", data)
				}
			}()
			New().Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: data})
		}()
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

// TestRemoveBackend: a backend goes only when nothing but databases being
// deleted is left on it; those (and their tenants) go with it.
func TestRemoveBackend(t *testing.T) {
	h := seeded(t)
	if r := h.apply(CmdRemoveBackend, &RemoveBackend{Name: "nope"}); codeOf(r.Err) != CodeNotFound {
		t.Fatalf("unknown backend: %v", r.Err)
	}
	r := h.apply(CmdRemoveBackend, &RemoveBackend{Name: "local"})
	const want = `backend "local" still holds 2 database(s) not being deleted: p0000abcd__myapp__wayne (tdb_0000abcd myapp__wayne) provisioning, p0000abcd__myapp_workspace (tdb_0000abcd myapp_workspace) provisioning`
	if codeOf(r.Err) != CodeConflict || r.Err.Error() != want {
		t.Fatalf("backend in use: %v\nwant %s", r.Err, want)
	}
	h.mustApply(CmdAddBackend, &AddBackend{Name: "dead", URL: "postgres://postgres@127.0.0.1:2/postgres", At: t0})
	db := newDB("p0000abcd__myapp__globex")
	db.Backend = "dead"
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: "tdb_0000abcd", Name: "globex", Blueprint: "myapp", At: t0,
		Database: db, Key: newKey("key_globex", RoleAdmin, ScopeTenant, "globex")})
	h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: "tdb_0000abcd", Name: "globex", At: t0})
	if n := h.mustApply(CmdRemoveBackend, &RemoveBackend{Name: "dead"}); n != 1 {
		t.Fatalf("removed %v databases, want 1", n)
	}
	h.f.View(func(s *State) {
		if s.Backends["dead"] != nil || s.Databases[db.Name] != nil || s.Project("tdb_0000abcd").Tenants["globex"] != nil {
			t.Fatal("the backend, its deleted database or its tenant is still there")
		}
		if s.Backends["local"] == nil || s.Project("tdb_0000abcd").Tenants["wayne"] == nil {
			t.Fatal("the other backend's things went too")
		}
	})
}

// TestAddBlueprintVersionOnce: a captured commit applied again under the
// same capture id (a retry of an attempt whose outcome was unknown) adds no
// second version; another id, or none, does.
func TestAddBlueprintVersionOnce(t *testing.T) {
	h := seeded(t)
	add := func(id string) any {
		return h.mustApply(CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: "tdb_0000abcd", Workspace: "myapp",
			Statements: []string{"CREATE TABLE t (id int)"}, At: t0, CaptureID: id})
	}
	if v := add("c1"); v != 1 {
		t.Fatalf("first: version %v", v)
	}
	if v := add("c1"); v != 1 {
		t.Fatalf("the same capture again: version %v, want 1", v)
	}
	if v := add("c2"); v != 2 {
		t.Fatalf("another capture: version %v, want 2", v)
	}
	if v := add(""); v != 3 {
		t.Fatalf("no capture id: version %v, want 3", v)
	}
	h.f.View(func(s *State) {
		if n := len(s.Project("tdb_0000abcd").Workspaces["myapp"].Versions); n != 3 {
			t.Fatalf("%d versions, want 3", n)
		}
	})
}

// TestGenerationFollowsEveryChange: readers that keep what they derived
// from the state until the generation changes see every apply and restore.
func TestGenerationFollowsEveryChange(t *testing.T) {
	h := seeded(t)
	before := h.f.Generation()
	h.mustApply(CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: "tdb_0000abcd", Workspace: "myapp", Statements: []string{"CREATE TABLE g (id int)"}, At: t0})
	if h.f.Generation() == before {
		t.Fatal("the generation did not change with an apply")
	}
	g := New()
	fresh := g.Generation()
	s, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.Generation() == fresh {
		t.Fatal("the generation did not change with a restore")
	}
}
