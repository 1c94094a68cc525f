package main

import (
	"fmt"
	"io"
	"tdb/httpapi"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newClusterCmd) }

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect the cluster, change its per-IP limits, back up its metadata"}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the leader and every node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return request(cmd, false, "GET", "/v1/cluster/status", nil, func(w io.Writer, s httpapi.ClusterStatus) {
				printFields(w, field{"leader_id", s.LeaderID}, field{"node_id", s.NodeID}, field{"cluster_id", s.ClusterID}, field{"applied_index", s.AppliedIndex}, field{"log_version", s.LogVersion},
					field{"unguarded_databases", s.UnguardedDatabases})
				fmt.Fprintln(w)
				rows := make([][]any, 0, len(s.Nodes))
				for _, n := range s.Nodes {
					rows = append(rows, []any{n.ID, n.Role, n.Voter, n.Alive, n.RaftIndex, n.LogVersion, clusterColumn(n.ClusterID, s.ClusterID), n.RaftAddr, n.HTTPAddr, n.WireAddr, n.GossipAddr})
				}
				printTable(w, []string{"ID", "ROLE", "VOTER", "ALIVE", "INDEX", "LOG VERSION", "CLUSTER", "RAFT", "HTTP", "WIRE", "GOSSIP"}, rows)
			})
		},
	}
	cmd.AddCommand(status, newClusterSettingsCmd(), newClusterBackupCmd())
	return cmd
}

// clusterColumn says whether a node is of this cluster: "same", "other
// <id>" for a node that says it belongs to another one (refused by this
// cluster's raft), "-" when either side knows no ID yet.
func clusterColumn(node, cluster string) string {
	switch {
	case node == "" || cluster == "":
		return "-"
	case node == cluster:
		return "same"
	default:
		return "other " + node
	}
}

func newClusterSettingsCmd() *cobra.Command {
	var maxConns, threshold int64
	var window, ban, maxBan time.Duration
	cmd := &cobra.Command{
		Use:   "settings [--max-conns-per-ip N] [--auth-fail-threshold N] [--auth-fail-window 60s] [--ban 60s] [--max-ban 1h]",
		Short: "Show or change per-IP limits and the auth-ban policy; only the flags given change (operator's admin key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]int64{}
			changed := cmd.Flags().Changed
			if changed("max-conns-per-ip") {
				body["max_conns_per_ip"] = maxConns
			}
			if changed("auth-fail-threshold") {
				body["auth_fail_threshold"] = threshold
			}
			for _, d := range []struct {
				flag, field string
				v           time.Duration
			}{
				{"auth-fail-window", "auth_fail_window_sec", window},
				{"ban", "ban_sec", ban},
				{"max-ban", "max_ban_sec", maxBan},
			} {
				if !changed(d.flag) {
					continue
				}
				if d.v%time.Second != 0 {
					return fmt.Errorf("--%s must be whole seconds, got %s", d.flag, d.v)
				}
				body[d.field] = int64(d.v / time.Second)
			}
			show := func(w io.Writer, s httpapi.ClusterSettings) {
				printFields(w, field{"max_conns_per_ip", s.MaxConnsPerIP}, field{"auth_fail_threshold", s.AuthFailThreshold},
					field{"auth_fail_window", time.Duration(s.AuthFailWindowSec) * time.Second},
					field{"ban", time.Duration(s.BanSec) * time.Second}, field{"max_ban", time.Duration(s.MaxBanSec) * time.Second})
			}
			if len(body) == 0 {
				return request(cmd, false, "GET", "/v1/cluster/settings", nil, show)
			}
			return request(cmd, true, "PATCH", "/v1/cluster/settings", body, show)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&maxConns, "max-conns-per-ip", 0, "concurrent connections per client IP (0 = off)")
	f.Int64Var(&threshold, "auth-fail-threshold", 0, "failed authentications within the window that ban an IP")
	f.DurationVar(&window, "auth-fail-window", 0, "window counting failed authentications")
	f.DurationVar(&ban, "ban", 0, "first ban length (doubles for repeat offenders)")
	f.DurationVar(&maxBan, "max-ban", 0, "longest ban")
	return cmd
}
