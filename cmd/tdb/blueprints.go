package main

import (
	"io"
	"net/url"
	"strings"
	"tdb/httpapi"

	"github.com/spf13/cobra"
)

func init() { register(newBlueprintsCmd) }

func newBlueprintsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "blueprints", Short: "Inspect blueprints (the DDL captured in tenant workspaces)"}
	versions := &cobra.Command{
		Use:   "versions NAME",
		Short: "List a blueprint's versions, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/blueprints/" + url.PathEscape(args[0]) + "/versions"
			return request(cmd, false, "GET", path, nil, func(w io.Writer, vs []httpapi.Version) {
				rows := make([][]any, 0, len(vs))
				for _, v := range vs {
					first := ""
					if len(v.Statements) > 0 {
						first = oneLine(v.Statements[0], 60)
					}
					rows = append(rows, []any{v.Version, v.DDLCount, v.CreatedAt, first})
				}
				printTable(w, []string{"VERSION", "DDL", "CREATED", "FIRST STATEMENT"}, rows)
			})
		},
	}
	cmd.AddCommand(versions)
	return cmd
}

// oneLine squeezes whitespace and cuts s to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
