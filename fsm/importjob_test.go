package fsm

import "testing"

func (h *harness) importJob(id string) Import {
	var im Import
	h.f.View(func(s *State) { im = *s.Imports[id] })
	return im
}

func TestImportLifecycle(t *testing.T) {
	h := deploySeeded(t)
	tables := []ImportTable{{Name: "public.accounts", Columns: []string{"id", "tenant_id"}, Routing: "tenant_id"}}
	create := func(id string, tenants ...ImportTenantSpec) Response {
		return h.apply(CmdCreateImport, &CreateImport{ID: id, ProjectID: depPID, Workspace: "myapp", SourceURL: "postgres://src/db",
			RoutingField: "tenant_id", Tables: tables, Tenants: tenants, At: t0})
	}
	bad := []struct {
		name string
		in   CreateImport
		code Code
	}{
		{"no tables", CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "x", RoutingField: "r"}, CodeBadRequest},
		{"control workspace", CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "controlplane", SourceURL: "x", RoutingField: "r", Tables: tables}, CodeBadRequest},
		{"unknown tenant", CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "x", RoutingField: "r", Tables: tables,
			Tenants: []ImportTenantSpec{{Tenant: "nobody", Value: "1"}}}, CodeNotFound},
		{"tenant twice", CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "x", RoutingField: "r", Tables: tables,
			Tenants: []ImportTenantSpec{{Tenant: "wayne", Value: "1"}, {Tenant: "wayne", Value: "2"}}}, CodeBadRequest},
	}
	for _, tc := range bad {
		if r := h.apply(CmdCreateImport, &tc.in); codeOf(r.Err) != tc.code {
			t.Fatalf("%s: %v, want %s", tc.name, r.Err, tc.code)
		}
	}
	if r := create("imp_1", ImportTenantSpec{"wayne", "1"}, ImportTenantSpec{"globex", "2"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := create("imp_2"); codeOf(r.Err) != CodeConflict {
		t.Fatalf("second import while one runs: %v", r.Err)
	}
	for _, c := range []SetImportTenant{
		{ID: "imp_1", Tenant: "wayne", Status: TenantRunning},
		{ID: "imp_1", Tenant: "wayne", Status: TenantDone, Rows: 10},
		{ID: "imp_1", Tenant: "globex", Status: TenantRunning},
		{ID: "imp_1", Tenant: "globex", Status: TenantFailed, Error: "boom"},
	} {
		h.mustApply(CmdSetImportTenant, &c)
	}
	im := h.importJob("imp_1")
	if im.Status != DeploymentFailed || im.Tenant("wayne").Rows != 10 || im.Tenant("globex").Error != "boom" || im.FinishedAt == nil {
		t.Fatalf("import %+v", im)
	}
	if r := h.apply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "wayne", Status: TenantRunning}); codeOf(r.Err) != CodeConflict {
		t.Fatalf("result after the end: %v", r.Err)
	}
	if n := h.mustApply(CmdRetryImport, &RetryImport{ID: "imp_1", At: t0}); n != 1 {
		t.Fatalf("retried %v", n)
	}
	im = h.importJob("imp_1")
	if im.Status != DeploymentInProgress || im.Tenant("globex").Status != TenantPending || im.Tenant("wayne").Status != TenantDone {
		t.Fatalf("after retry %+v", im)
	}
	if r := h.apply(CmdRetryImport, &RetryImport{ID: "imp_1"}); codeOf(r.Err) != CodeConflict {
		t.Fatalf("retry of a running import: %v", r.Err)
	}
	h.mustApply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "globex", Status: TenantDone, Rows: 3})
	if im = h.importJob("imp_1"); im.Status != DeploymentCompleted {
		t.Fatalf("status %s", im.Status)
	}
	var last *Import
	h.f.View(func(s *State) { last = s.ImportOf(depPID, "myapp") })
	if last == nil || last.ID != "imp_1" {
		t.Fatalf("ImportOf = %+v", last)
	}
}
