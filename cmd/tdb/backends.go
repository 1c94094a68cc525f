package main

import (
	"io"
	"net/url"

	"github.com/spf13/cobra"

	"tdb/httpapi"
)

func init() { register(newBackendsCmd) }

func newBackendsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "backends", Short: "Register PostgreSQL servers tenants are placed on (operator's admin key)"}

	var name, rawURL string
	add := &cobra.Command{
		Use:   "add --name NAME --url postgres://superuser@host:port/postgres",
		Short: "Register a backend PostgreSQL server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]string{"name": name, "url": rawURL}
			return request(cmd, true, "POST", "/v1/backends", body, func(w io.Writer, b httpapi.Backend) {
				printFields(w, field{"name", b.Name}, field{"url", b.URL})
			})
		},
	}
	add.Flags().StringVar(&name, "name", "", "backend name")
	add.Flags().StringVar(&rawURL, "url", "", "superuser connection URL")
	_ = add.MarkFlagRequired("name")
	_ = add.MarkFlagRequired("url")

	list := &cobra.Command{
		Use:   "list",
		Short: "List backends (passwords redacted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, true, "GET", "/v1/backends", nil, func(w io.Writer, bs []httpapi.Backend) {
				rows := make([][]any, 0, len(bs))
				for _, b := range bs {
					rows = append(rows, []any{b.Name, b.URL, b.Databases, b.CreatedAt})
				}
				printTable(w, []string{"NAME", "URL", "DATABASES", "CREATED"}, rows)
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Unregister a backend that holds only databases being deleted (they are forgotten with it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return request(cmd, true, "DELETE", "/v1/backends/"+url.PathEscape(args[0]), nil, func(w io.Writer, r httpapi.BackendRemoved) {
				printFields(w, field{"name", r.Name}, field{"forgotten databases", r.ForgottenDatabases})
			})
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}
