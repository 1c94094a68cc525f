package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"

	"tdb/actors"
	"tdb/fsm"
	"tdb/node"
)

func init() { register(newServerCmd) }

func newServerCmd() *cobra.Command {
	var cfg node.Config
	var allowPlaintext bool
	var join, gossipAddr, proxyFrom, restore string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one node of a tdb cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if cfg.NodeID == "" || cfg.DataDir == "" {
				return errors.New("--node-id and --data-dir are required")
			}
			if cfg.AdminKey == "" {
				cfg.AdminKey = os.Getenv("TDB_ADMIN_KEY")
			}
			cfg.Bootstrap = join == ""
			if restore != "" {
				if join != "" {
					return errors.New("--restore starts a new cluster of this node alone: it cannot be given with --join (start the other nodes with --join to it)")
				}
				if cfg.Restore, err = readBackupFile(restore); err != nil {
					return err
				}
			}
			cfg.GossipAddr = gossipAddr
			for _, a := range strings.Split(join, ",") {
				if a = strings.TrimSpace(a); a != "" {
					cfg.Join = append(cfg.Join, a)
				}
			}
			if cfg.ClusterSecret == "" {
				cfg.ClusterSecret = os.Getenv("TDB_CLUSTER_SECRET")
			}
			if cfg.ClusterSecret == "" && cfg.AdminKey == "" {
				cmd.PrintErrln("warning: no --cluster-secret or --admin-key: gossip is unencrypted and nodes cannot forward writes to each other")
			}
			cfg.RequireTLS = !allowPlaintext
			trusted, err := node.ParseCIDRs(proxyFrom)
			if err != nil {
				return err
			}
			cfg.ProxyProtocolFrom = trusted
			cfg.LogOutput = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Start(ctx, cfg)
			if err != nil {
				return err
			}
			if b := cfg.Restore; b != nil {
				cmd.PrintErrln(restoredSummary(restore, b, n.Replica().ClusterID()))
			}
			cmd.PrintErrf("node %s serving wire %s, http %s\n", cfg.NodeID, n.BoundWireAddr(), n.HTTPAddr())
			<-ctx.Done()
			// Stopping waits for what sessions have in flight (DDL whose
			// blueprint version is being recorded) for up to --stop-wait;
			// a second signal ends the process at once, as it would
			// without tdb's handler.
			stop()
			cmd.PrintErrf("node %s stopping: sessions finish what they have in flight, for up to %s (a second Ctrl-C or SIGTERM stops at once)\n", cfg.NodeID, cfg.StopWait)
			return n.Stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NodeID, "node-id", "", "unique id of this node")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for this node's state")
	f.StringVar(&cfg.WireAddr, "wire-addr", "127.0.0.1:5433", "PostgreSQL wire proxy listen address")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP control plane listen address")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7000", "raft listen address")
	f.StringVar(&cfg.Raft.Advertise, "raft-advertise", "", "raft address the other nodes dial (default: the raft listen address); e.g. a proxy in front of it")
	f.StringVar(&gossipAddr, "gossip-addr", "127.0.0.1:7946", "gossip listen address")
	f.StringVar(&join, "join", "", "gossip address(es) of existing members, comma separated")
	f.StringVar(&restore, "restore", "", "start a new cluster of this node alone from a metadata backup (tdb cluster backup); --data-dir must be empty or absent; first start only (restart without it), not with --join")
	f.StringVar(&cfg.AdminKey, "admin-key", "", "the cluster operator's key (env TDB_ADMIN_KEY)")
	f.StringVar(&cfg.ClusterSecret, "cluster-secret", "", "secret shared by the nodes for internal calls and gossip (env TDB_CLUSTER_SECRET; default: derived from the admin key)")
	f.DurationVar(&cfg.Cluster.LeaderContactLimit, "leader-contact-limit", 10*time.Second, "refuse new logins after this long without contact with a raft leader")
	f.DurationVar(&cfg.Cluster.ReapTimeout, "reap-timeout", 72*time.Hour, "remove a failed node from raft after this long")
	f.DurationVar(&cfg.RevokedKeyRetention, "revoked-key-retention", node.DefaultRevokedKeyRetention, "remove a revoked key from the metadata this long after its revocation (it is then refused as an unknown key)")
	f.StringVar(&cfg.PublicWireAddr, "public-wire-addr", "", "host:port put in connection strings (default: the wire address)")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "wire TLS certificate (default: self-signed, made once in the data dir)")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "wire TLS key")
	f.BoolVar(&allowPlaintext, "allow-plaintext", false, "accept wire clients without TLS")
	f.DurationVar(&cfg.ServerIdleTimeout, "server-idle-timeout", 1800*time.Second, "close pooled backend sessions idle this long")
	f.DurationVar(&cfg.ClientIdleTimeout, "client-idle-timeout", 1800*time.Second, "close client connections silent this long")
	f.DurationVar(&cfg.JournalSweep, "journal-sweep", actors.DefaultJournalSweep, "how often the leader records the DDL that tenant workspaces' journals hold and no session recorded")
	f.DurationVar(&cfg.StopWait, "stop-wait", node.DefaultStopWait, "on SIGTERM or Ctrl-C, wait this long for sessions to finish what they have in flight, then close them")
	f.BoolVar(&cfg.LazyBackendAttach, "lazy-backend-attach", false, lazyAttachHelp)
	f.BoolVar(&cfg.GoroutineRelay, "goroutine-relay", false, goroutineRelayHelp)
	relayLoopsFlag(cmd, &cfg.RelayLoops)
	relayNiceFlag(cmd, &cfg.RelayNice)
	f.StringVar(&proxyFrom, "proxy-protocol-from", "", "load balancers (CIDRs, comma separated) whose connections must carry a PROXY v1/v2 header; no one else may send one")
	f.StringVar(&proxyFrom, "proxy-protocol", "", "the same as --proxy-protocol-from")
	runtimeFlags(cmd, nil)
	return cmd
}

// readBackupFile reads and checks a metadata backup for --restore.
func readBackupFile(path string) (*fsm.Backup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Wrap(err, "--restore")
	}
	b, err := fsm.ReadBackup(data)
	if err != nil {
		return nil, errors.Wrapf(err, "--restore %s", path)
	}
	return b, nil
}

// restoredSummary is the line a node restored from the backup b in file
// says once it started as the new cluster newID.
func restoredSummary(file string, b *fsm.Backup, newID string) string {
	return fmt.Sprintf("restored %s (cluster %s, index %d, log version %d, taken %s) as the new cluster %s",
		file, orDash(b.ClusterID), b.AppliedIndex, b.LogVersion, b.TakenAt.Format(time.RFC3339), orDash(newID))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
