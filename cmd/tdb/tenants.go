package main

import (
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newTenantsCmd) }

// tenantOut reads both a tenant (GET, list) and a created tenant (POST,
// which adds the connection string).
type tenantOut struct {
	TenantID         string    `json:"tenant_id"`
	Blueprint        string    `json:"blueprint"`
	Database         string    `json:"database"`
	Status           string    `json:"status"`
	Error            string    `json:"error"`
	SchemaVersion    int       `json:"schema_version"`
	ConnectionString string    `json:"connection_string"`
	CreatedAt        time.Time `json:"created_at"`
}

func printTenant(w io.Writer, t tenantOut) {
	fields := []field{{"tenant_id", t.TenantID}, {"blueprint", t.Blueprint}, {"database", t.Database}, {"status", t.Status}}
	if t.Error != "" {
		fields = append(fields, field{"error", t.Error})
	}
	if t.ConnectionString != "" {
		fields = append(fields, field{"connection_string", t.ConnectionString})
	} else {
		fields = append(fields, field{"schema_version", t.SchemaVersion}, field{"created_at", t.CreatedAt})
	}
	printFields(w, fields...)
}

func newTenantsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenants", Short: "Manage tenants (one database each, deployed from a blueprint)"}

	var name, blueprint string
	create := &cobra.Command{
		Use:   "create --blueprint BLUEPRINT --name NAME",
		Short: "Create a tenant and wait for its database; prints its connection_string (tenant key inside)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]string{"name": name, "blueprint": blueprint}
			return request(cmd, false, "POST", "/v1/tenants", body, printTenant)
		},
	}
	create.Flags().StringVar(&name, "name", "", "tenant name")
	create.Flags().StringVar(&blueprint, "blueprint", "", "blueprint (tenant-mode workspace) to deploy from")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("blueprint")

	var filter string
	list := &cobra.Command{
		Use:   "list [--blueprint NAME]",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/tenants"
			if filter != "" {
				path += "?blueprint=" + url.QueryEscape(filter)
			}
			return request(cmd, false, "GET", path, nil, func(w io.Writer, ts []tenantOut) {
				rows := make([][]any, 0, len(ts))
				for _, t := range ts {
					rows = append(rows, []any{t.TenantID, t.Blueprint, t.Database, t.Status, t.SchemaVersion, t.Error})
				}
				printTable(w, []string{"TENANT", "BLUEPRINT", "DATABASE", "STATUS", "VERSION", "ERROR"}, rows)
			})
		},
	}
	list.Flags().StringVar(&filter, "blueprint", "", "only tenants of this blueprint")

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a tenant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return request(cmd, false, "GET", "/v1/tenants/"+url.PathEscape(args[0]), nil, printTenant)
		},
	}

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a tenant: its database is dropped in the background and its tenant keys stop working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return request(cmd, false, "DELETE", "/v1/tenants/"+url.PathEscape(args[0]), nil, func(w io.Writer, t tenantOut) {
				printFields(w, field{"tenant_id", t.TenantID}, field{"status", t.Status})
			})
		},
	}
	cmd.AddCommand(create, list, get, del)
	return cmd
}
