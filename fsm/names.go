package fsm

import (
	"regexp"
	"strings"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// NameRule is the rule every workspace, blueprint and tenant name follows, as
// shown to users in errors.
const NameRule = "names must match [a-z][a-z0-9_]{0,39}, must not contain \"__\" and must not end in \"_\""

// ValidateName checks a workspace, blueprint or tenant name. The double
// underscore is reserved: it separates blueprint and tenant in database
// names. So is a final one: workspace "a_" would be database a__workspace
// (tenant "workspace" of blueprint "a"), and its tenant "t" database a___t,
// which reads back as no tenant at all.
func ValidateName(kind, name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "__") || strings.HasSuffix(name, "_") {
		return errorf(CodeBadRequest, "invalid %s name %q: %s", kind, name, NameRule)
	}
	return nil
}

// ValidExistingName checks a name that may already exist: the rule before
// log version 2, when a name could end in "_". Lookups (wire database
// names, key scopes) use it, so objects created then stay reachable.
func ValidExistingName(kind, name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "__") {
		return errorf(CodeBadRequest, "invalid %s name %q: %s", kind, name, NameRule)
	}
	return nil
}

// validateName checks a new name as the log version in force has it: before
// version 2 a name could end in "_" (replicas of older builds still apply
// that rule, and all must agree).
func (s *State) validateName(kind, name string) error {
	if s.ActiveLogVersion() < 2 {
		return ValidExistingName(kind, name)
	}
	return ValidateName(kind, name)
}

// WorkspaceSuffix ends the database name of a workspace.
const WorkspaceSuffix = "_workspace"

// WorkspaceDatabase is the wire database name of a workspace: myapp_workspace.
func WorkspaceDatabase(workspace string) string { return workspace + WorkspaceSuffix }

// TenantDatabase is the wire database name of a tenant: myapp__wayne.
func TenantDatabase(blueprint, tenant string) string { return blueprint + "__" + tenant }

// ParseDatabase splits a wire database name into a workspace and, for a tenant
// database, the tenant name. ok is false for names that are neither form.
func ParseDatabase(db string) (workspace, tenant string, ok bool) {
	if bp, t, found := strings.Cut(db, "__"); found {
		if ValidExistingName("blueprint", bp) != nil || ValidExistingName("tenant", t) != nil {
			return "", "", false
		}
		return bp, t, true
	}
	ws, found := strings.CutSuffix(db, WorkspaceSuffix)
	if !found || ValidExistingName("workspace", ws) != nil {
		return "", "", false
	}
	return ws, "", true
}

// PhysicalPrefix begins the name of every physical database the control
// plane places now: db_ and 24 random hex digits, minted outside the state
// machine (httpapi). The name carries neither the project id nor the tenant,
// since every session on a backend server can list the databases and roles
// there (pg_database, pg_roles, pg_stat_activity). Databases placed before
// keep the names they were given (p<project>__<logical>), which the state
// records.
const PhysicalPrefix = "db_"
