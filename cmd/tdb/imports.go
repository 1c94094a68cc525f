package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"tdb/httpapi"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newImportsCmd) }

// importOut is an import as the API returns it, followable.
type importOut httpapi.Import

func (im importOut) progressOf() (string, string, int, int, int) {
	return im.ID, im.Status, im.TenantsCompleted + im.TenantsFailed, im.TenantsFailed, im.TenantsTotal
}

// printImport prints an import and its tenants: all, or (onlyProblems)
// those not done, plus any connection strings (shown only once).
func printImport(w io.Writer, im importOut, onlyProblems bool) {
	printFields(w,
		field{"id", im.ID}, field{"workspace", im.Workspace}, field{"routing_field", im.RoutingField},
		field{"status", im.Status},
		field{"tenants", fmt.Sprintf("%d total, %d completed, %d failed", im.TenantsTotal, im.TenantsCompleted, im.TenantsFailed)},
		field{"rows_copied", im.RowsCopied}, field{"tables", im.Tables}, field{"lookups", im.Lookups}, field{"unrouted", im.Unrouted}, field{"not_copied", im.NotCopied})
	var rows [][]any
	withConn := false
	for _, t := range im.Tenants {
		withConn = withConn || t.ConnectionString != ""
	}
	for _, t := range im.Tenants {
		if onlyProblems && t.Status == "done" && t.ConnectionString == "" {
			continue
		}
		row := []any{t.TenantID, oneLine(t.RoutingValue, 30), t.Status, t.Rows, oneLine(t.Error, 80)}
		if withConn {
			row = append(row, t.ConnectionString)
		}
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		header := []string{"TENANT", "VALUE", "STATUS", "ROWS", "ERROR"}
		if withConn {
			header = append(header, "CONNECTION_STRING")
		}
		fmt.Fprintln(w)
		printTable(w, header, rows)
	}
}

// newWorkspaceImportFullCmd is `tdb workspaces import-full NAME --from-url URL --routing-field F`.
func newWorkspaceImportFullCmd() *cobra.Command {
	var fromURL, field string
	var concurrency int
	var wait bool
	var poll time.Duration
	cmd := &cobra.Command{
		Use:   "import-full NAME --from-url URL --routing-field tenant_id [--wait]",
		Short: "Split an existing database into tenants: its schema becomes the blueprint, each routing value a tenant",
		Long: `Analyse the database at --from-url (schema public), take its schema as the workspace's
first blueprint version, create one tenant per distinct value of --routing-field (named from
the value, e.g. 42 → t_42, "Acme Corp" → acme_corp) and copy each tenant's rows into it.
Tables without the routing field follow their foreign keys to a table that has it; tables
that cannot are lookup tables, copied whole into each tenant, when tables copied reference
them, and else are reported as unrouted and not copied.

The new tenants' connection strings (tenant keys inside) are printed once, here. The copy
runs in the cluster; follow it with --wait (a progress bar on a terminal) or
tdb imports status ID. Rerunning the command resumes or retries the import; a tenant is
copied in one transaction that first empties its tables, so rows are never duplicated.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"from_url": fromURL, "routing_field": field}
			if concurrency > 0 {
				body["concurrency"] = concurrency
			}
			path := "/v1/workspaces/" + url.PathEscape(args[0]) + "/import-full"
			if !wait {
				return request(cmd, false, "POST", path, body, func(w io.Writer, im importOut) { printImport(w, im, false) })
			}
			c, err := newClient(cmd, false)
			if err != nil {
				return err
			}
			var im importOut
			first, err := c.call(cmd.Context(), "POST", path, body, &im)
			if err != nil {
				return err
			}
			// The connection strings come only in this answer: show them at
			// once (humans), and put them into the final document.
			quiet, _ := cmd.Flags().GetBool(flagQuiet)
			asJSON, _ := cmd.Flags().GetBool(flagJSON)
			if !quiet && !asJSON {
				printImport(cmd.ErrOrStderr(), im, true)
			}
			conns := map[string]string{}
			for _, t := range im.Tenants {
				if t.ConnectionString != "" {
					conns[t.TenantID] = t.ConnectionString
				}
			}
			err = follow(cmd, c, "/v1/imports/"+url.PathEscape(im.ID), poll, "import", "tdb imports status",
				func(raw []byte) []byte { return withConnections(raw, conns) },
				func(w io.Writer, im importOut) { printImport(w, im, true) })
			if err != nil && asJSON && cmd.Context().Err() != nil {
				// Interrupted: the first answer is the only document left to print.
				_, _ = cmd.OutOrStdout().Write(first)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&fromURL, "from-url", "", "postgres:// URL of the database to split")
	cmd.Flags().StringVar(&field, "routing-field", "", "column whose values name the tenants (e.g. tenant_id)")
	cmd.Flags().IntVar(&concurrency, "concurrency", 0, "tenants copied at once (default 4)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the copy until it ends; exit non-zero if a tenant failed")
	cmd.Flags().DurationVar(&poll, "poll", 500*time.Millisecond, "how often --wait asks for progress")
	_ = cmd.Flags().MarkHidden("poll")
	_ = cmd.MarkFlagRequired("from-url")
	_ = cmd.MarkFlagRequired("routing-field")
	return cmd
}

func newImportsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "imports", Short: "Follow import-full jobs"}
	var wait bool
	var poll time.Duration
	status := &cobra.Command{
		Use:   "status ID [--wait]",
		Short: "Show an import and every tenant's progress",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/imports/" + url.PathEscape(args[0])
			if wait {
				c, err := newClient(cmd, false)
				if err != nil {
					return err
				}
				return follow(cmd, c, path, poll, "import", "tdb imports status", nil,
					func(w io.Writer, im importOut) { printImport(w, im, true) })
			}
			return request(cmd, false, "GET", path, nil, func(w io.Writer, im importOut) { printImport(w, im, false) })
		},
	}
	status.Flags().BoolVar(&wait, "wait", false, "follow the import until it ends; exit non-zero if a tenant failed")
	status.Flags().DurationVar(&poll, "poll", 500*time.Millisecond, "how often --wait asks for progress")
	_ = status.Flags().MarkHidden("poll")
	list := &cobra.Command{
		Use:   "list",
		Short: "List imports, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, false, "GET", "/v1/imports", nil, func(w io.Writer, ims []importOut) {
				rows := make([][]any, 0, len(ims))
				for _, im := range ims {
					rows = append(rows, []any{im.ID, im.Workspace, im.Status,
						fmt.Sprintf("%d/%d", im.TenantsCompleted, im.TenantsTotal), im.TenantsFailed, im.RowsCopied, im.CreatedAt})
				}
				printTable(w, []string{"ID", "WORKSPACE", "STATUS", "DONE", "FAILED", "ROWS", "CREATED"}, rows)
			})
		},
	}
	cmd.AddCommand(status, list)
	return cmd
}

// withConnections adds connection strings to the tenants of an import
// document.
func withConnections(raw []byte, conns map[string]string) []byte {
	if len(conns) == 0 {
		return raw
	}
	var doc map[string]any
	if json.Unmarshal(raw, &doc) != nil {
		return raw
	}
	tenants, _ := doc["tenants"].([]any)
	for _, t := range tenants {
		if m, ok := t.(map[string]any); ok {
			if id, _ := m["tenant_id"].(string); conns[id] != "" {
				m["connection_string"] = conns[id]
			}
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return raw
	}
	return out
}
