package actors

import (
	"fmt"
	"slices"
	"strings"

	"tdb/fsm"
	"tdb/wire"
)

// CheckScope decides whether a key may open a wire connection to a resolved
// database: its scope first, then the database's type (a key that does not
// reach a workspace learns nothing of it). The texts are part of the
// product contract.
func CheckScope(k *fsm.Key, t fsm.Target) error {
	if err := checkScope(k, t); err != nil {
		return err
	}
	if ws := t.Workspace; ws.DatabaseType != fsm.TypePostgreSQL {
		return wire.Fatalf("28000", "blueprint %q is %s, not PostgreSQL. Connect via the %s proxy instead.",
			ws.Name, typeTitle(ws.DatabaseType), ws.DatabaseType)
	}
	return nil
}

func checkScope(k *fsm.Key, t fsm.Target) error {
	ws := t.Workspace
	switch k.ScopeType {
	case fsm.ScopeProject:
		if t.Tenant != nil {
			return wire.Fatalf("28000", "credential is project-scoped; direct-tenant connections require a tenant-scoped or workspace-scoped key")
		}
	case fsm.ScopeWorkspace:
		if !slices.Contains(k.ScopeValues, ws.Name) {
			return wire.Fatalf("28000", "credential scoped to workspaces [%s], attempted workspace %q",
				strings.Join(k.ScopeValues, ", "), ws.Name)
		}
	case fsm.ScopeTenant:
		if t.Tenant == nil {
			return wire.Fatalf("28000", "credential scoped to tenants [%s], attempted workspace %q",
				strings.Join(k.ScopeValues, ", "), ws.Name)
		}
		if !slices.Contains(k.ScopeValues, t.Tenant.Name) {
			return wire.Fatalf("28000", "credential scoped to tenants [%s], attempted tenant %q",
				strings.Join(k.ScopeValues, ", "), t.Tenant.Name)
		}
	default:
		return wire.Fatalf("28000", "credential has an unknown scope")
	}
	return nil
}

func typeTitle(t string) string {
	switch t {
	case fsm.TypeMySQL:
		return "MySQL"
	case fsm.TypeMongoDB:
		return "MongoDB"
	case fsm.TypeRedis:
		return "Redis"
	case fsm.TypePostgreSQL:
		return "PostgreSQL"
	}
	return fmt.Sprint(t)
}
