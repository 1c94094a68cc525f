package main

import (
	"io"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newProjectsCmd) }

// projectOut reads both a project and a created one (which adds the proxy
// password).
type projectOut struct {
	ProjectID     string    `json:"project_id"`
	Name          string    `json:"name"`
	ProxyPassword string    `json:"proxy_password"`
	Workspaces    int       `json:"workspaces"`
	Tenants       int       `json:"tenants"`
	CreatedAt     time.Time `json:"created_at"`
}

func newProjectsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "projects", Short: "Create and list projects (operator's admin key)"}

	var name string
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a project; prints its project_id and proxy_password",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, true, "POST", "/v1/projects", map[string]string{"name": name}, func(w io.Writer, p projectOut) {
				printFields(w, field{"project_id", p.ProjectID}, field{"name", p.Name}, field{"proxy_password", p.ProxyPassword})
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "project name")
	_ = create.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List projects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, true, "GET", "/v1/projects", nil, func(w io.Writer, ps []projectOut) {
				rows := make([][]any, 0, len(ps))
				for _, p := range ps {
					rows = append(rows, []any{p.ProjectID, p.Name, p.Workspaces, p.Tenants, p.CreatedAt})
				}
				printTable(w, []string{"PROJECT_ID", "NAME", "WORKSPACES", "TENANTS", "CREATED"}, rows)
			})
		},
	}
	cmd.AddCommand(create, list)
	return cmd
}
