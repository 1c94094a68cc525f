// Command tdb is tdb's one binary: `tdb server` and `tdb dev` run nodes, and
// the client commands (projects, workspaces, blueprints, tenants, apikeys,
// backends, cluster) drive the HTTP control plane.
//
// main.go builds the root command with the global flags (--api-url, --api-key,
// --admin-key, --project, --json, --quiet) and adds every subcommand registered
// from an init function with register. client.go is the small HTTP client;
// output.go prints a response either as the API's JSON document (--json) or as
// short tables and key: value lines. Errors end the process with status 1 and one
// line on stderr: `tdb: <message> (<code>)`. devrestore.go checks a data
// directory and a metadata backup for `tdb dev --restore`, which restores
// through the node's own restore (node.Config.Restore) as `tdb server
// --restore` does.
package main
