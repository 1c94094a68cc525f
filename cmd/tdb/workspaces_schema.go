package main

import (
	"io"
	"net/url"
	"tdb/httpapi"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"
)

// newWorkspaceSchemaCmd is `tdb workspaces schema NAME --template T | --from-url URL`.
func newWorkspaceSchemaCmd() *cobra.Command {
	var template, fromURL string
	cmd := &cobra.Command{
		Use:   "schema NAME --template saas|ecommerce|blog | --from-url URL",
		Short: "Give a workspace a schema: a built-in template, or an existing database's schema",
		Long: `Run a schema in the workspace database, in one transaction, and record it as the
next blueprint version (tenant-mode workspaces), ready for tdb deployments create.

Templates:
  saas       accounts and their users, with roles
  ecommerce  customers, products, orders and order items
  blog       authors, posts, comments and tags

--from-url postgres://user:password@host:port/db imports the schema public of an existing
database (pg_dump --schema-only when pg_dump is on the server's PATH, else read from the
catalogs), only into a workspace that has no blueprint versions yet. Objects that already
exist in the workspace make the command fail and change nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (template == "") == (fromURL == "") {
				return errors.New("pass one of --template NAME or --from-url URL")
			}
			body := map[string]string{"template": template, "from_url": fromURL}
			if template == "" {
				delete(body, "template")
			} else {
				delete(body, "from_url")
			}
			path := "/v1/workspaces/" + url.PathEscape(args[0]) + "/schema"
			return request(cmd, false, "POST", path, body, func(w io.Writer, s httpapi.Schema) {
				fields := []field{{"workspace", s.Workspace}, {"source", s.Source}, {"method", s.Method}, {"ddl_count", s.DDLCount}}
				for _, v := range s.Versions {
					fields = append(fields, field{"version", v.Version})
				}
				printFields(w, fields...)
			})
		},
	}
	cmd.Flags().StringVar(&template, "template", "", "built-in template: saas, ecommerce or blog")
	cmd.Flags().StringVar(&fromURL, "from-url", "", "postgres:// URL of a database whose schema to import")
	return cmd
}
