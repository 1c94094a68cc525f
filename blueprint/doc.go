// Package blueprint supplies schemas for tenant workspaces from outside the
// wire proxy: a few built-in templates (templates.go) and the schema of an
// existing database (importschema.go: pg_dump --schema-only when it is on
// PATH, else catalog introspection), and runs them in a workspace database as
// its admin role (apply.go). The control plane records what committed as
// blueprint versions, as the proxy does for DDL typed in a workspace.
package blueprint
