package main

import (
	"io"
	"net/url"
	"tdb/httpapi"

	"github.com/spf13/cobra"
)

func init() { register(newAPIKeysCmd) }

func newAPIKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "apikeys", Short: "Manage API keys (wire passwords and HTTP bearer keys)"}

	var name, role, scopeType string
	var values []string
	create := &cobra.Command{
		Use:   "create [--name N] [--role admin|write|read] --scope-type project|workspace|tenant [--scope-values a,b]",
		Short: "Create a key within your own key's reach; prints the key once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"name": name, "role": role, "scope_type": scopeType, "scope_values": values}
			return request(cmd, false, "POST", "/v1/apikeys", body, func(w io.Writer, k httpapi.Key) {
				printFields(w, field{"id", k.ID}, field{"key", k.Key}, field{"name", k.Name}, field{"role", k.Role},
					field{"scope_type", k.ScopeType}, field{"scope_values", k.ScopeValues})
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "a label for the key")
	create.Flags().StringVar(&role, "role", "", "admin, write or read (default admin)")
	create.Flags().StringVar(&scopeType, "scope-type", "", "project, workspace or tenant")
	create.Flags().StringSliceVar(&values, "scope-values", nil, "workspace or tenant names, comma separated")
	_ = create.MarkFlagRequired("scope-type")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys within your key's reach (no secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, false, "GET", "/v1/apikeys", nil, func(w io.Writer, ks []httpapi.Key) {
				rows := make([][]any, 0, len(ks))
				for _, k := range ks {
					rows = append(rows, []any{k.ID, k.Name, k.Role, k.ScopeType, k.ScopeValues, k.Status, k.CreatedAt})
				}
				printTable(w, []string{"ID", "NAME", "ROLE", "SCOPE", "VALUES", "STATUS", "CREATED"}, rows)
			})
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key: it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return request(cmd, false, "DELETE", "/v1/apikeys/"+url.PathEscape(args[0]), nil, func(w io.Writer, k httpapi.Key) {
				printFields(w, field{"id", k.ID}, field{"status", k.Status})
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
