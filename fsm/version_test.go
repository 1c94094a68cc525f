package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"
)

func TestLogVersionRaisedNeverLowered(t *testing.T) {
	h := newHarness(t)
	h.f.View(func(s *State) {
		if v := s.ActiveLogVersion(); v != 1 {
			t.Fatalf("a new cluster runs log version %d, want 1 until the leader raises it", v)
		}
	})
	if v := h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 2}); v != uint16(2) {
		t.Fatalf("raise to 2 answered %v", v)
	}
	if v := h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 1}); v != uint16(2) {
		t.Fatalf("an older version lowered the cluster's: answered %v", v)
	}
	h.restored().View(func(s *State) {
		if s.ActiveLogVersion() != 2 {
			t.Fatalf("a snapshot lost the log version: %d", s.ActiveLogVersion())
		}
	})
}

// A command of a version the cluster does not run yet is refused before it
// is proposed, whatever the payload.
func TestCommandsOfANewerLogVersionWait(t *testing.T) {
	const future CommandType = 60000
	since[future] = LogVersion + 1
	defer delete(since, future)
	s := NewState()
	err := s.CheckProposable(future)
	if !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), "upgrade every node first") {
		t.Fatalf("a command of a newer log version: %v", err)
	}
	for t2 := range commandNames {
		if Since(t2) > LogVersion {
			t.Errorf("%s is of log version %d, newer than this build's %d", t2, Since(t2), LogVersion)
		}
		if err := s.CheckProposable(t2); Since(t2) <= 1 && err != nil {
			t.Errorf("%s refused at log version 1: %v", t2, err)
		}
	}
	if err := s.CheckProposable(CmdSetLogVersion); err != nil {
		t.Fatalf("the version's own command is gated by what nodes advertise, not by the state: %v", err)
	}
}

// A node of an older build stops with a message that says what to do, not
// with a bare decoding error; and it does not restore a newer cluster's
// snapshot.
func TestOlderBuildStopsClearly(t *testing.T) {
	for name, data := range map[string]string{
		"unknown command":    `{"t":60001,"p":{}}`,
		"newer log version":  fmt.Sprintf(`{"t":%d,"p":{"version":%d}}`, CmdSetLogVersion, LogVersion+1),
		"newer log version2": fmt.Sprintf(`{"t":%d,"p":{"version":65535}}`, CmdSetLogVersion),
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), "upgrade this node") {
					t.Errorf("%s: recovered %v, want a panic saying to upgrade", name, r)
				}
			}()
			New().Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: []byte(data)})
		}()
	}

	newer := NewState()
	newer.LogVersion = LogVersion + 1
	snap, err := json.Marshal(snapshotData{Applied: 7, State: newer})
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	err = f.Restore(io.NopCloser(bytes.NewReader(snap)))
	if err == nil || !strings.Contains(err.Error(), "upgrade this node") {
		t.Fatalf("restoring a newer cluster's snapshot: %v", err)
	}
	if f.AppliedIndex() != 0 {
		t.Fatal("a refused snapshot changed the state")
	}
}

// Names that end in "_" are refused from log version 2 on; before it every
// replica still accepts them, as older builds do.
func TestTrailingUnderscoreRefusedFromLogVersion2(t *testing.T) {
	h := seeded(t)
	ws := func(name string) Response {
		return h.apply(CmdCreateWorkspace, &CreateWorkspace{ProjectID: "tdb_0000abcd", Name: name, Mode: ModeTenant,
			DatabaseType: TypePostgreSQL, Database: ptr(newDB("p0000abcd__" + name + "_workspace")), At: t0})
	}
	if r := ws("old_"); r.Err != nil {
		t.Fatalf("log version 1 refused a name older builds accept: %v", r.Err)
	}
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: "tdb_0000abcd", Name: "bob_", Blueprint: "myapp", At: t0,
		Database: newDB("p0000abcd__myapp__bob_"), Key: newKey("key_bob", RoleAdmin, ScopeTenant, "bob_")})
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 2})
	// What was created under the old rule stays reachable.
	h.f.View(func(s *State) {
		if tg, ok := s.Resolve("tdb_0000abcd", "myapp__bob_"); !ok || tg.Database == nil || tg.Database.Name != "p0000abcd__myapp__bob_" {
			t.Fatalf("tenant bob_ no longer resolves after the raise: %+v %v", tg, ok)
		}
	})
	if r := ws("new_"); codeOf(r.Err) != CodeBadRequest || !strings.Contains(r.Err.Error(), NameRule) {
		t.Fatalf("log version 2 took a name ending in _: %v", r.Err)
	}
	if _, _, ok := ParseDatabase("x___bob"); ok {
		t.Fatal("x___bob parsed as a tenant database")
	}
	if bp, tn, ok := ParseDatabase("a__workspace"); !ok || bp != "a" || tn != "workspace" {
		t.Fatalf("a__workspace: %q %q %v", bp, tn, ok)
	}
}

// Settings past their bounds are refused from log version 2 on.
func TestSettingBoundsFromLogVersion2(t *testing.T) {
	h := seeded(t)
	huge := int64(10_000_000_000_000)
	if r := h.apply(CmdUpdateWorkspaceSettings, &UpdateWorkspaceSettings{ProjectID: "tdb_0000abcd", Name: "myapp", QueryTimeoutMs: &huge}); r.Err != nil {
		t.Fatalf("log version 1 refused what older builds accept: %v", r.Err)
	}
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 2})
	r := h.apply(CmdUpdateWorkspaceSettings, &UpdateWorkspaceSettings{ProjectID: "tdb_0000abcd", Name: "myapp", QueryTimeoutMs: &huge})
	if codeOf(r.Err) != CodeBadRequest || !strings.Contains(r.Err.Error(), "query_timeout_ms must be at most") {
		t.Fatalf("a huge query timeout at log version 2: %v", r.Err)
	}
	short := int64(10)
	r = h.apply(CmdSetClusterSettings, &SetClusterSettings{MaxBanSec: &short})
	if codeOf(r.Err) != CodeBadRequest || !strings.Contains(r.Err.Error(), "must not be less than ban_sec") {
		t.Fatalf("a longest ban below the first one: %v", r.Err)
	}
	h.f.View(func(s *State) {
		if s.Settings.MaxBanSec != DefaultClusterSettings.MaxBanSec {
			t.Fatalf("a refused change was applied: %+v", s.Settings)
		}
	})
}

// SetDatabaseGuard records the DDL guard a database holds; it never lowers
// the version recorded, and a snapshot keeps it.
func TestSetDatabaseGuard(t *testing.T) {
	h := seeded(t)
	const db = "p0000abcd__myapp__wayne"
	if Since(CmdSetDatabaseGuard) != 2 {
		t.Fatalf("set_database_guard is of log version %d, want 2", Since(CmdSetDatabaseGuard))
	}
	if r := h.apply(CmdSetDatabaseGuard, &SetDatabaseGuard{Name: "nope", Version: 1}); codeOf(r.Err) != CodeNotFound {
		t.Fatalf("an unknown database: %v", r.Err)
	}
	if r := h.apply(CmdSetDatabaseGuard, &SetDatabaseGuard{Name: db, Version: 0}); codeOf(r.Err) != CodeBadRequest {
		t.Fatalf("version 0: %v", r.Err)
	}
	guard := func(f *FSM) (v int) {
		f.View(func(s *State) { v = s.Databases[db].Guard })
		return v
	}
	h.mustApply(CmdSetDatabaseGuard, &SetDatabaseGuard{Name: db, Version: 2})
	h.mustApply(CmdSetDatabaseGuard, &SetDatabaseGuard{Name: db, Version: 1})
	if g := guard(h.f); g != 2 {
		t.Fatalf("guard %d after 2 then 1, want 2", g)
	}
	if g := guard(h.restored()); g != 2 {
		t.Fatalf("a snapshot kept guard %d, want 2", g)
	}
}

// From log version 2 a provisioning result counts only while the database
// is being provisioned: one that comes late, from a leader that lost its
// place, changes nothing. Version 1 replicas kept taking it, so the rule
// waits for every replica to apply it.
func TestLateProvisioningResult(t *testing.T) {
	h := seeded(t)
	const db = "p0000abcd__myapp__wayne"
	status := func() (st string, v int) {
		h.f.View(func(s *State) { st, v = s.Databases[db].Status, s.Databases[db].SchemaVersion })
		return st, v
	}
	h.mustApply(CmdSetDatabaseStatus, &SetDatabaseStatus{Name: db, Status: StatusReady, SchemaVersion: ptr(3)})
	h.mustApply(CmdSetDatabaseStatus, &SetDatabaseStatus{Name: db, Status: StatusReady, SchemaVersion: ptr(2)})
	if st, v := status(); st != StatusReady || v != 2 {
		t.Fatalf("log version 1 takes a later result: %s %d", st, v)
	}
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 2})
	for _, late := range []*SetDatabaseStatus{
		{Name: db, Status: StatusFailed, Error: "boom"},
		{Name: db, Status: StatusReady, SchemaVersion: ptr(1)},
	} {
		if r := h.apply(CmdSetDatabaseStatus, late); codeOf(r.Err) != CodeConflict || !strings.Contains(r.Err.Error(), "is ready, not being provisioned") {
			t.Fatalf("a late %s: %v", late.Status, r.Err)
		}
	}
	if st, v := status(); st != StatusReady || v != 2 {
		t.Fatalf("late results changed the database: %s %d", st, v)
	}
}

// A payload that does not decode into its command's type (a forwarded one
// is JSON of any shape) is refused before it is proposed: committed, it
// would stop every replica's Apply, on every restart.
func TestEncodeRefusesAPayloadOfAnotherShape(t *testing.T) {
	if _, err := Encode(CmdCreateProject, json.RawMessage(`{"id": 5}`)); err == nil || !strings.Contains(err.Error(), "does not decode into the command") {
		t.Fatalf("a number for a string: %v", err)
	}
	if _, err := Encode(CmdCreateProject, json.RawMessage(`{"id": "tdb_0000abcd"}`)); err != nil {
		t.Fatalf("a payload of the right shape: %v", err)
	}
}

// TestNoKeyKeepsADeletedTenantsName: from log version 4 no key is made for
// a tenant being deleted, and a removed tenant's name is taken from the keys
// older builds made meanwhile, so no key reaches the next tenant that takes
// the name. Below version 4 both are as they were (replicas of older builds
// apply the same).
func TestNoKeyKeepsADeletedTenantsName(t *testing.T) {
	const pid, db = "tdb_0000abcd", "p0000abcd__myapp__wayne"
	for _, v := range []uint16{3, 4} {
		h := seeded(t)
		h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: v})
		h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: pid, Name: "globex", Blueprint: "myapp", At: t0,
			Database: newDB("p0000abcd__myapp__globex"), Key: newKey("key_globex", RoleAdmin, ScopeTenant, "globex")})
		h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: pid, Name: "wayne", At: t0})
		r := h.apply(CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("key_late", RoleAdmin, ScopeTenant, "wayne"), At: t0})
		if v < 4 {
			if r.Err != nil {
				t.Fatalf("log version %d: a key for a tenant being deleted: %v", v, r.Err)
			}
		} else if codeOf(r.Err) != CodeConflict || r.Err.Error() != `tenant "wayne" is being deleted` {
			t.Fatalf("log version %d: a key for a tenant being deleted: %v", v, r.Err)
		}
		// A key an older build made while both were live.
		h.mustApply(CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("key_both", RoleRead, ScopeTenant, "globex"), At: t0})
		at := t0.Add(time.Hour)
		h.mustApply(CmdRemoveDatabase, &RemoveDatabase{Name: db, At: at})
		h.f.View(func(s *State) {
			p := s.Projects[pid]
			if p.Tenants["wayne"] != nil {
				t.Fatalf("log version %d: wayne is still there", v)
			}
			late := p.Keys["key_late"]
			switch {
			case v < 4 && (late == nil || !slices.Equal(late.ScopeValues, []string{"wayne"}) || late.RevokedAt != nil):
				t.Fatalf("log version %d: the late key changed: %+v", v, late)
			case v >= 4 && late != nil:
				t.Fatalf("log version %d: the late key was made: %+v", v, late)
			}
			if k := p.Keys["key_both"]; !slices.Equal(k.ScopeValues, []string{"globex"}) || k.RevokedAt != nil {
				t.Fatalf("log version %d: a key of another tenant changed: %+v", v, k)
			}
		})
	}
	// At version 4 a key older builds made for the tenant being deleted
	// (before the cluster moved to 4) loses the name when it is removed,
	// and is revoked then, as it has no tenant left.
	h := seeded(t)
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 3})
	h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: pid, Name: "wayne", At: t0})
	h.mustApply(CmdCreateKey, &CreateKey{ProjectID: pid, Key: newKey("key_late", RoleAdmin, ScopeTenant, "wayne"), At: t0})
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 4})
	at := t0.Add(time.Hour)
	h.mustApply(CmdRemoveDatabase, &RemoveDatabase{Name: db, At: at})
	h.f.View(func(s *State) {
		k := s.Projects[pid].Keys["key_late"]
		if len(k.ScopeValues) != 0 || k.RevokedAt == nil || !k.RevokedAt.Equal(at) {
			t.Fatalf("the key made while wayne was being deleted: %+v", k)
		}
	})
}

// TestVersionSettingsFromLogVersion5: a captured version keeps the session
// settings its DDL ran with from log version 5 on; before it, every
// replica drops them, as older builds do. Settings without a value, or
// with an overlong one, are refused.
func TestVersionSettingsFromLogVersion5(t *testing.T) {
	const pid = "tdb_0000abcd"
	ss := &SessionSettings{TimeZone: "America/New_York", DateStyle: "ISO, DMY", IntervalStyle: "postgres"}
	for _, v := range []uint16{4, 5} {
		h := seeded(t)
		h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: v})
		h.mustApply(CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: pid, Workspace: "myapp",
			Statements: []string{"CREATE TABLE t (d timestamptz DEFAULT '2024-01-01')"}, At: t0, Settings: ss})
		h.f.View(func(s *State) {
			got := s.Projects[pid].Workspaces["myapp"].Versions[0].Settings
			switch {
			case v < 5 && got != nil:
				t.Fatalf("log version %d kept settings %+v", v, got)
			case v >= 5 && (got == nil || *got != *ss):
				t.Fatalf("log version %d: settings %+v, want %+v", v, got, ss)
			}
		})
		if v < 5 {
			continue
		}
		for _, bad := range []SessionSettings{
			{TimeZone: "UTC", DateStyle: "ISO, MDY"},
			{TimeZone: strings.Repeat("x", MaxSettingValue+1), DateStyle: "ISO, MDY", IntervalStyle: "postgres"},
			{TimeZone: "UTC\x00", DateStyle: "ISO, MDY", IntervalStyle: "postgres"},
		} {
			r := h.apply(CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: pid, Workspace: "myapp",
				Statements: []string{"CREATE TABLE u (id int)"}, At: t0, Settings: &bad})
			if codeOf(r.Err) != CodeBadRequest {
				t.Fatalf("settings %+v: %v, want a bad request", bad, r.Err)
			}
		}
		h.f.View(func(s *State) {
			if n := len(s.Projects[pid].Workspaces["myapp"].Versions); n != 1 {
				t.Fatalf("refused settings left %d versions", n)
			}
		})
	}
}

// TestDeletedTenantLeavesJobsFromLogVersion6: from log version 6 a tenant
// deleted while a deployment or an import still has it to do leaves them,
// and they finish with the other tenants; a retried import leaves out a
// failed tenant deleted since. Before it, every replica keeps it there, as
// older builds do. RemoveBackend revokes at its own time.
func TestDeletedTenantLeavesJobsFromLogVersion6(t *testing.T) {
	tables := []ImportTable{{Name: "public.accounts", Columns: []string{"id", "tenant_id"}, Routing: "tenant_id"}}
	for _, v := range []uint16{5, 6} {
		h := deploySeeded(t)
		h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: v})
		h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2,
			Tenants: []string{"wayne", "globex"}, At: t0})
		h.mustApply(CmdSetDeploymentResult, &SetDeploymentResult{ID: "dep_1", Tenant: "globex", Status: TenantRunning, FromVersion: 1, At: t0})
		h.mustApply(CmdSetDeploymentResult, &SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantRunning, FromVersion: 1, At: t0})
		h.mustApply(CmdSetDeploymentResult, &SetDeploymentResult{ID: "dep_1", Tenant: "wayne", Status: TenantDone, FromVersion: 1, Version: 2, At: t0})
		h.mustApply(CmdCreateImport, &CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "postgres://src/db",
			RoutingField: "tenant_id", Tables: tables, Tenants: []ImportTenantSpec{{"wayne", "1"}, {"globex", "2"}}, At: t0})
		h.mustApply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "wayne", Status: TenantDone, Rows: 4})
		at := t0.Add(time.Minute)
		h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: depPID, Name: "globex", At: at})
		d, im := h.deployment("dep_1"), h.importJob("imp_1")
		switch {
		case v < 6 && (d.Status != DeploymentInProgress || len(d.Results) != 2 || im.Status != DeploymentInProgress || len(im.Tenants) != 2):
			t.Fatalf("log version %d: the deleted tenant left: deployment %s %d results, import %s %d tenants", v, d.Status, len(d.Results), im.Status, len(im.Tenants))
		case v >= 6 && (d.Status != DeploymentCompleted || len(d.Results) != 1 || d.Results[0].Tenant != "wayne" || !d.FinishedAt.Equal(at) ||
			im.Status != DeploymentCompleted || len(im.Tenants) != 1 || im.Tenants[0].Tenant != "wayne"):
			t.Fatalf("log version %d: deployment %s %+v, import %s %+v; want both completed with wayne only", v, d.Status, d.Results, im.Status, im.Tenants)
		}
	}

	// A failed import whose failed tenant is deleted afterwards (or was
	// deleted before version 6, and failed for it) completes at its retry.
	for _, v := range []uint16{5, 6} {
		h := deploySeeded(t)
		h.mustApply(CmdCreateImport, &CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "postgres://src/db",
			RoutingField: "tenant_id", Tables: tables, Tenants: []ImportTenantSpec{{"wayne", "1"}, {"globex", "2"}}, At: t0})
		h.mustApply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "wayne", Status: TenantDone, Rows: 4})
		h.mustApply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "globex", Status: TenantFailed, Error: "tenant globex was deleted"})
		h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: depPID, Name: "globex", At: t0})
		h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: v})
		n := h.mustApply(CmdRetryImport, &RetryImport{ID: "imp_1", At: t0})
		im := h.importJob("imp_1")
		switch {
		case v < 6 && (n != 1 || im.Status != DeploymentInProgress || im.Tenant("globex").Status != TenantPending):
			t.Fatalf("log version %d: retried %v, import %s %+v", v, n, im.Status, im.Tenants)
		case v >= 6 && (n != 0 || im.Status != DeploymentCompleted || len(im.Tenants) != 1):
			t.Fatalf("log version %d: retried %v, import %s %+v; want completed with wayne only", v, n, im.Status, im.Tenants)
		}
	}

	// A failed import's failed tenant deleted at version 6 is not copied,
	// at the import's retry, into the next tenant that takes its name.
	{
		h := deploySeeded(t)
		h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 6})
		h.mustApply(CmdCreateImport, &CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "postgres://src/db",
			RoutingField: "tenant_id", Tables: tables, Tenants: []ImportTenantSpec{{"wayne", "1"}, {"globex", "2"}}, At: t0})
		h.mustApply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "wayne", Status: TenantDone, Rows: 4})
		h.mustApply(CmdSetImportTenant, &SetImportTenant{ID: "imp_1", Tenant: "globex", Status: TenantFailed, Error: "boom"})
		var db string
		h.f.View(func(s *State) { db = s.Projects[depPID].Tenants["globex"].Database })
		h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: depPID, Name: "globex", At: t0})
		h.mustApply(CmdRemoveDatabase, &RemoveDatabase{Name: db, At: t0})
		h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: depPID, Name: "globex", Blueprint: "myapp", At: t0,
			Database: newDB("p0000abcd__myapp__globex2"), Key: newKey("key_globex2", RoleAdmin, ScopeTenant, "globex")})
		if im := h.importJob("imp_1"); im.Status != DeploymentCompleted || len(im.Tenants) != 1 || im.FinishedAt == nil {
			t.Fatalf("after globex, its only failed tenant, was deleted and made again: import %s %+v; want completed with wayne only", im.Status, im.Tenants)
		}
		if r := h.apply(CmdRetryImport, &RetryImport{ID: "imp_1", At: t0}); codeOf(r.Err) != CodeConflict {
			t.Fatalf("a retry of the completed import: %v", r.Err)
		}
	}

	// A key an older build made for a tenant being deleted is revoked when
	// RemoveBackend forgets the tenant, at its time.
	h := seeded(t)
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 3})
	h.mustApply(CmdAddBackend, &AddBackend{Name: "dead", URL: "postgres://postgres@127.0.0.1:2/postgres", At: t0})
	db := newDB("p0000abcd__myapp__globex")
	db.Backend = "dead"
	h.mustApply(CmdCreateTenant, &CreateTenant{ProjectID: depPID, Name: "globex", Blueprint: "myapp", At: t0,
		Database: db, Key: newKey("key_globex", RoleAdmin, ScopeTenant, "globex")})
	h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: depPID, Name: "globex", At: t0})
	h.mustApply(CmdCreateKey, &CreateKey{ProjectID: depPID, Key: newKey("key_late", RoleRead, ScopeTenant, "globex"), At: t0})
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 6})
	at := t0.Add(time.Hour)
	h.mustApply(CmdRemoveBackend, &RemoveBackend{Name: "dead", At: at})
	h.f.View(func(s *State) {
		if k := s.Projects[depPID].Keys["key_late"]; k == nil || k.RevokedAt == nil || !k.RevokedAt.Equal(at) {
			t.Fatalf("the key left with no tenant by RemoveBackend: %+v, want revoked at %v", k, at)
		}
	})
}

// TestJobsLeaveOutATenantDeletedBeforeThemFromLogVersion6: a deployment or
// an import whose proposer listed a tenant that is deleted before it is
// applied (the proposer read the tenants just before the DELETE) leaves it
// out, as it would have left it had the DELETE come a moment later, from
// log version 6; before, it kept it, to fail there.
func TestJobsLeaveOutATenantDeletedBeforeThemFromLogVersion6(t *testing.T) {
	tables := []ImportTable{{Name: "public.accounts", Columns: []string{"id", "tenant_id"}, Routing: "tenant_id"}}
	for _, v := range []uint16{5, 6} {
		h := deploySeeded(t)
		h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: v})
		h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: depPID, Name: "globex", At: t0})
		h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2,
			Tenants: []string{"wayne", "globex"}, At: t0})
		h.mustApply(CmdCreateImport, &CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "postgres://src/db",
			RoutingField: "tenant_id", Tables: tables, Tenants: []ImportTenantSpec{{"wayne", "1"}, {"globex", "2"}}, At: t0})
		d, im := h.deployment("dep_1"), h.importJob("imp_1")
		switch {
		case v < 6 && (len(d.Results) != 2 || len(im.Tenants) != 2):
			t.Fatalf("log version %d: deployment %+v, import %+v; want globex kept", v, d.Results, im.Tenants)
		case v >= 6 && (len(d.Results) != 1 || d.Results[0].Tenant != "wayne" || len(im.Tenants) != 1 || im.Tenants[0].Tenant != "wayne"):
			t.Fatalf("log version %d: deployment %+v, import %+v; want wayne only", v, d.Results, im.Tenants)
		}
	}
	// With every listed tenant being deleted, both are done at once.
	h := deploySeeded(t)
	h.mustApply(CmdSetLogVersion, &SetLogVersion{Version: 6})
	h.mustApply(CmdDeleteTenant, &DeleteTenant{ProjectID: depPID, Name: "globex", At: t0})
	h.mustApply(CmdCreateDeployment, &CreateDeployment{ID: "dep_1", ProjectID: depPID, Blueprint: "myapp", Version: 2,
		Tenants: []string{"globex"}, At: t0})
	h.mustApply(CmdCreateImport, &CreateImport{ID: "imp_1", ProjectID: depPID, Workspace: "myapp", SourceURL: "postgres://src/db",
		RoutingField: "tenant_id", Tables: tables, Tenants: []ImportTenantSpec{{"globex", "2"}}, At: t0})
	if d, im := h.deployment("dep_1"), h.importJob("imp_1"); d.Status != DeploymentCompleted || im.Status != DeploymentCompleted {
		t.Fatalf("deployment %s, import %s; want both completed", d.Status, im.Status)
	}
}
