package main

import (
	"io"
	"net/url"
	"strings"
	"tdb/httpapi"

	"github.com/spf13/cobra"
)

func init() { register(newWorkspacesCmd) }

func printWorkspace(w io.Writer, ws httpapi.Workspace) {
	fields := []field{
		{"name", ws.Name}, {"mode", ws.Mode}, {"database_type", ws.DatabaseType}, {"database", ws.Database},
		{"status", ws.Status},
	}
	if ws.Error != "" {
		fields = append(fields, field{"error", ws.Error})
	}
	fields = append(fields,
		field{"latest_version", ws.LatestVersion},
		field{"max_rows_per_query", ws.Settings.MaxRowsPerQuery},
		field{"query_timeout_ms", ws.Settings.QueryTimeoutMs},
		field{"max_connections", ws.Settings.MaxConnections},
		field{"created_at", ws.CreatedAt},
	)
	printFields(w, fields...)
}

func newWorkspacesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workspaces", Short: "Manage workspaces (schema design spaces and blueprints)"}

	var name, mode, database string
	create := &cobra.Command{
		Use:   "create --name NAME [--mode tenant|control] [--database postgresql|mysql|mongodb|redis]",
		Short: "Create a workspace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]string{"name": name, "mode": mode, "database": database}
			return request(cmd, false, "POST", "/v1/workspaces", body, printWorkspace)
		},
	}
	create.Flags().StringVar(&name, "name", "", "workspace name")
	create.Flags().StringVar(&mode, "mode", "tenant", "tenant (DDL becomes blueprint versions) or control")
	create.Flags().StringVar(&database, "database", "postgresql", "database type")
	_ = create.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List workspaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, false, "GET", "/v1/workspaces", nil, func(w io.Writer, wss []httpapi.Workspace) {
				rows := make([][]any, 0, len(wss))
				for _, ws := range wss {
					rows = append(rows, []any{ws.Name, ws.Mode, ws.DatabaseType, ws.Database, ws.Status, ws.LatestVersion})
				}
				printTable(w, []string{"NAME", "MODE", "TYPE", "DATABASE", "STATUS", "VERSION"}, rows)
			})
		},
	}

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a workspace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return request(cmd, false, "GET", "/v1/workspaces/"+url.PathEscape(args[0]), nil, printWorkspace)
		},
	}

	cmd.AddCommand(create, list, get, newWorkspaceSettingsCmd(), newWorkspaceSchemaCmd(), newWorkspaceImportFullCmd())
	return cmd
}

func newWorkspaceSettingsCmd() *cobra.Command {
	var maxRows, timeoutMs, maxConns int64
	cmd := &cobra.Command{
		Use:   "settings NAME [--max-rows-per-query N] [--query-timeout-ms N] [--max-connections N]",
		Short: "Show or change a workspace's limits (0 = off); only the flags given change",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/workspaces/" + url.PathEscape(args[0]) + "/settings"
			body := map[string]int64{}
			for flag, v := range map[string]int64{
				"max-rows-per-query": maxRows, "query-timeout-ms": timeoutMs, "max-connections": maxConns,
			} {
				if cmd.Flags().Changed(flag) {
					body[flagToField(flag)] = v
				}
			}
			show := func(w io.Writer, s httpapi.WorkspaceSettings) {
				printFields(w, field{"workspace", s.Workspace}, field{"max_rows_per_query", s.MaxRowsPerQuery},
					field{"query_timeout_ms", s.QueryTimeoutMs}, field{"max_connections", s.MaxConnections})
			}
			if len(body) == 0 {
				return request(cmd, false, "GET", path, nil, show)
			}
			return request(cmd, false, "PATCH", path, body, show)
		},
	}
	cmd.Flags().Int64Var(&maxRows, "max-rows-per-query", 0, "rows one query may return (0 = off)")
	cmd.Flags().Int64Var(&timeoutMs, "query-timeout-ms", 0, "statement timeout in ms (0 = off)")
	cmd.Flags().Int64Var(&maxConns, "max-connections", 0, "concurrent connections per database (0 = off)")
	return cmd
}

// flagToField turns a flag name into its JSON field: max-rows-per-query → max_rows_per_query.
func flagToField(flag string) string { return strings.ReplaceAll(flag, "-", "_") }
