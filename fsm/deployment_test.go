package fsm

import (
	"bytes"
	"io"
	"testing"
)

const depPID = "tdb_0000abcd"

// deploySeeded is seeded() plus a second tenant, two blueprint versions, both
// tenants ready at version 1 and a control workspace.
func deploySeeded(t *testing.T) *harness {
	h := seeded(t)
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: depPID, Name: "globex", Blueprint: "myapp", At: t0,
		Database: newDB("p0000abcd__myapp__globex"), Key: newKey("key_globex", RoleAdmin, ScopeTenant, "globex")})
	h.mustApply(CmdCreateWorkspace, &CreateWorkspace{ProjectID: depPID, Name: "controlplane", Mode: ModeControl,
		DatabaseType: TypePostgreSQL, At: t0, Database: ptr(newDB("p0000abcd__controlplane_workspace"))})
	for _, stmt := range []string{"CREATE TABLE a (id int)", "CREATE TABLE b (id int)"} {
		h.mustApply(CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: depPID, Workspace: "myapp", Statements: []string{stmt}, At: t0})
	}
	for _, db := range []string{"p0000abcd__myapp__wayne", "p0000abcd__myapp__globex"} {
		h.mustApply(CmdSetDatabaseStatus, &SetDatabaseStatus{Name: db, Status: StatusReady, SchemaVersion: ptr(1)})
	}
	return h
}

func (h *harness) deployment(id string) *Deployment {
	var d *Deployment
	h.f.View(func(s *State) {
		if x := s.Deployments[id]; x != nil {
			d = x.Copy()
		}
	})
	return d
}

func (h *harness) schemaVersion(db string) int {
	var v int
	h.f.View(func(s *State) { v = s.Databases[db].SchemaVersion })
	return v
}

func TestCreateDeploymentValidation(t *testing.T) {
	both := []string{"wayne", "globex"}
	tests := []struct {
		name string
		in   CreateDeployment
		code Code
	}{
		{"ok", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2, Tenants: both}, ""},
		{"no tenants", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2}, ""},
		{"unknown project", CreateDeployment{ID: "dep_1", ProjectID: "tdb_99999999", Blueprint: "myapp", Version: 2}, CodeNotFound},
		{"no id", CreateDeployment{ProjectID: depPID, Blueprint: "myapp", Version: 2}, CodeBadRequest},
		{"unknown blueprint", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "nope", Version: 1}, CodeNotFound},
		{"control workspace", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "controlplane", Version: 1}, CodeBadRequest},
		{"version 0", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 0}, CodeBadRequest},
		{"version past latest", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 3}, CodeBadRequest},
		{"concurrency too high", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2, Concurrency: MaxDeployConcurrency + 1}, CodeBadRequest},
		{"negative concurrency", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2, Concurrency: -1}, CodeBadRequest},
		{"unknown tenant", CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2, Tenants: []string{"nobody"}}, CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := deploySeeded(t)
			before, _ := h.f.Hash()
			r := h.apply(CmdCreateDeployment, &tc.in)
			if got := codeOf(r.Err); got != tc.code {
				t.Fatalf("code = %q (err %v), want %q", got, r.Err, tc.code)
			}
			after, _ := h.f.Hash()
			if (tc.code != "") != (before == after) {
				t.Fatalf("state changed = %v for code %q", before != after, tc.code)
			}
		})
	}
}

func TestDeploymentLifecycle(t *testing.T) {
	h := deploySeeded(t)
	id := h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp",
		Version: 2, Tenants: []string{"wayne", "globex", "wayne"}, At: t0})
	if id != "dep_1" {
		t.Fatalf("response = %v", id)
	}
	d := h.deployment("dep_1")
	if d.Status != DeploymentInProgress || d.Concurrency != DefaultDeployConcurrency || len(d.Results) != 2 ||
		d.Results[0].Tenant != "globex" || d.Results[1].Status != TenantPending {
		t.Fatalf("created %+v", d)
	}
	// One deployment of a blueprint at a time.
	if r := h.apply(CmdCreateDeployment, &CreateDeployment{ID: "dep_2", ProjectID: depPID, Blueprint: "myapp", Version: 2, At: t0}); codeOf(r.Err) != CodeConflict {
		t.Fatalf("second active deployment: %v", r.Err)
	}

	steps := []struct {
		name string
		in   SetDeploymentResult
		code Code
	}{
		{"unknown deployment", SetDeploymentResult{ID: "nope", Tenant: "wayne", Status: TenantRunning}, CodeNotFound},
		{"unknown tenant", SetDeploymentResult{ID: "dep_1", Tenant: "nobody", Status: TenantRunning}, CodeNotFound},
		{"bad status", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: "weird"}, CodeBadRequest},
		{"wayne running", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantRunning, FromVersion: 1}, ""},
		{"wayne running again (new leader)", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantRunning, FromVersion: 1}, ""},
		{"done below target", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantDone, Version: 1}, CodeBadRequest},
		{"failed without error", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantFailed, Version: 1}, CodeBadRequest},
		{"wayne done", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantDone, FromVersion: 1, Version: 2, DurationMs: 12}, ""},
		{"wayne final", SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantFailed, Error: "late", Version: 1}, CodeConflict},
		{"globex failed", SetDeploymentResult{ID: "dep_1", Tenant: "globex", Status: TenantFailed, Error: "relation \"b\" already exists", FromVersion: 1, Version: 1}, ""},
		{"after the end", SetDeploymentResult{ID: "dep_1", Tenant: "globex", Status: TenantRunning}, CodeConflict},
	}
	for _, st := range steps {
		if r := h.apply(CmdSetDeploymentResult, &st.in); codeOf(r.Err) != st.code {
			t.Fatalf("%s: code = %q (err %v), want %q", st.name, codeOf(r.Err), r.Err, st.code)
		}
	}
	d = h.deployment("dep_1")
	w, g := d.Result("wayne"), d.Result("globex")
	if w.Status != TenantDone || w.Attempts != 2 || w.DurationMs != 12 || w.Version != 2 {
		t.Fatalf("wayne = %+v", w)
	}
	if g.Status != TenantFailed || g.Error == "" {
		t.Fatalf("globex = %+v", g)
	}
	if d.Status != DeploymentFailed || d.FinishedAt == nil {
		t.Fatalf("deployment = %s finished %v", d.Status, d.FinishedAt)
	}
	if v := h.schemaVersion("p0000abcd__myapp__wayne"); v != 2 {
		t.Fatalf("wayne schema_version = %d, want 2", v)
	}
	if v := h.schemaVersion("p0000abcd__myapp__globex"); v != 1 {
		t.Fatalf("globex schema_version = %d, want 1", v)
	}

	// A rerun: wayne is already at the target and done at once.
	h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_2", ProjectID: depPID, Blueprint: "myapp",
		Version: 2, Tenants: []string{"wayne", "globex"}, At: t0})
	d = h.deployment("dep_2")
	if r := d.Result("wayne"); r.Status != TenantDone || r.FromVersion != 2 {
		t.Fatalf("rerun wayne = %+v", r)
	}
	if r := d.Result("globex"); r.Status != TenantPending {
		t.Fatalf("rerun globex = %+v", r)
	}
	h.mustApply(CmdSetDeploymentResult, &SetDeploymentResult{ID: "dep_2", Tenant: "globex", Status: TenantDone, FromVersion: 1, Version: 2})
	if d = h.deployment("dep_2"); d.Status != DeploymentCompleted {
		t.Fatalf("rerun status = %s", d.Status)
	}
	done, failed := d.Counts()
	if done != 2 || failed != 0 {
		t.Fatalf("counts = %d/%d", done, failed)
	}
}

func TestDeploymentWithEveryTenantCurrentCompletesAtOnce(t *testing.T) {
	h := deploySeeded(t)
	h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp",
		Version: 1, Tenants: []string{"wayne", "globex"}, At: t0})
	if d := h.deployment("dep_1"); d.Status != DeploymentCompleted || d.FinishedAt == nil {
		t.Fatalf("status = %s", d.Status)
	}
	// A provisioning tenant is not at any version yet: it stays pending.
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: depPID, Name: "acme", Blueprint: "myapp", At: t0,
		Database: newDB("p0000abcd__myapp__acme"), Key: newKey("key_acme", RoleAdmin, ScopeTenant, "acme")})
	h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_2", ProjectID: depPID, Blueprint: "myapp",
		Version: 1, Tenants: []string{"acme"}, At: t0})
	if d := h.deployment("dep_2"); d.Status != DeploymentInProgress {
		t.Fatalf("status = %s", d.Status)
	}
}

func TestDeploymentsSurviveSnapshot(t *testing.T) {
	h := deploySeeded(t)
	h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp",
		Version: 2, Tenants: []string{"wayne"}, At: t0})
	want, _ := h.f.Hash()
	g := h.restored()
	if got, _ := g.Hash(); got != want {
		t.Fatal("restored state differs")
	}
	// A snapshot from before deployments existed restores with an empty map.
	old := New()
	if err := old.Restore(io.NopCloser(bytes.NewReader([]byte(`{"applied":3,"state":{"projects":{}}}`)))); err != nil {
		t.Fatal(err)
	}
	old.View(func(s *State) {
		if s.Deployments == nil {
			t.Fatal("Deployments is nil after restoring an old snapshot")
		}
	})
}
