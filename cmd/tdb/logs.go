package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"tdb/httpapi"

	"github.com/spf13/cobra"
)

func init() { register(newLogsCmd) }

func newLogsCmd() *cobra.Command {
	var tenant, since string
	var limit int
	cmd := &cobra.Command{
		Use:   "logs [--tenant T] [--since 1h] [--limit N]",
		Short: "Show the query log of the node answering (every statement of wire clients and of the query endpoint)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if tenant != "" {
				q.Set("tenant", tenant)
			}
			if since != "" {
				q.Set("since", since)
			}
			if cmd.Flags().Changed("limit") { // the API refuses a limit out of range, rather than show the default
				q.Set("limit", strconv.Itoa(limit))
			}
			path := "/v1/logs"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			return request(cmd, false, "GET", path, nil, func(w io.Writer, out httpapi.Logs) {
				rows := make([][]any, 0, len(out.Entries))
				for _, e := range out.Entries {
					rows = append(rows, []any{e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Database, e.Role, e.ClientIP,
						fmt.Sprintf("%.1f", e.DurationMs), e.Rows, e.SQLState, oneLine(e.Statement, 80)})
				}
				printTable(w, []string{"TIME", "DATABASE", "ROLE", "CLIENT", "MS", "ROWS", "SQLSTATE", "STATEMENT"}, rows)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only this tenant's statements")
	f.StringVar(&since, "since", "1h", "how far back: a duration (1h, 15m) or an RFC 3339 time")
	f.IntVar(&limit, "limit", 0, "newest entries to show (default 1000)")
	return cmd
}
