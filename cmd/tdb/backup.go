package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"

	"tdb/fsm"
)

// newClusterBackupCmd is `tdb cluster backup --out FILE`: the cluster's
// metadata backup (GET /v1/cluster/backup), checked and written to a file
// only its owner can read, since it holds every secret of the cluster.
func newClusterBackupCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "backup --out FILE [--force]",
		Short: "Write the cluster's metadata (projects, keys, tenants, their databases' passwords) to a file; it holds secrets (operator's admin key)",
		Long: `Write the cluster's metadata to --out, with mode 0600: projects, workspaces and their
blueprint versions, tenants, their databases with the role passwords, backends with their
URLs, API keys, settings, bans, deployments and imports, as of a raft index the answering
node has caught up to. It holds secrets: store it as you store the backends' superuser
passwords. It holds no tenant data (back the databases up with PostgreSQL's own tools) and
no admin key. An existing file is left alone unless --force. --out - writes the backup to
standard output (never to a terminal) and what it printed to standard error. It takes the
operator's admin key (--admin-key, env TDB_ADMIN_KEY).

Restore it with tdb server --restore FILE into an empty --data-dir: a new cluster of that
node alone, with a new cluster ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			toStdout := out == "-"
			if toStdout && isTerminal(cmd.OutOrStdout()) {
				return errors.New("--out - would print the backup, which holds secrets, on a terminal: redirect standard output to a file or a pipe, or give --out FILE")
			}
			if _, err := os.Lstat(out); err == nil && !force && !toStdout {
				return errors.Newf("%s exists: give another --out, or --force to replace it", out)
			}
			c, err := newClient(cmd, true)
			if err != nil {
				return err
			}
			data, err := c.callLimit(cmd.Context(), "GET", "/v1/cluster/backup", nil, nil, maxBackup)
			if err != nil {
				return err
			}
			b, err := fsm.ReadBackup(data)
			if err != nil {
				return errors.Wrap(err, "the backup the API sent")
			}
			w := cmd.OutOrStdout()
			if toStdout {
				if _, err := w.Write(data); err != nil {
					return errors.Wrap(err, "write the backup to standard output")
				}
				w = cmd.ErrOrStderr()
			} else if err := writePrivate(out, data, force); err != nil {
				return err
			}
			summary := backupSummary{File: out, Bytes: len(data), ClusterID: b.ClusterID, AppliedIndex: b.AppliedIndex, LogVersion: b.LogVersion, TakenAt: b.TakenAt}
			if asJSON, _ := cmd.Flags().GetBool(flagJSON); asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(summary)
			}
			if quiet, _ := cmd.Flags().GetBool(flagQuiet); quiet {
				return nil
			}
			printFields(w, field{"file", summary.File}, field{"bytes", summary.Bytes}, field{"cluster_id", summary.ClusterID},
				field{"applied_index", summary.AppliedIndex}, field{"log_version", summary.LogVersion}, field{"taken_at", summary.TakenAt})
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the backup to (mode 0600); - for standard output")
	cmd.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	return cmd
}

// backupSummary is what `tdb cluster backup` prints.
type backupSummary struct {
	File         string    `json:"file"`
	Bytes        int       `json:"bytes"`
	ClusterID    string    `json:"cluster_id"`
	AppliedIndex uint64    `json:"applied_index"`
	LogVersion   uint16    `json:"log_version"`
	TakenAt      time.Time `json:"taken_at"`
}

// writePrivate writes data to path durably with mode 0600. Without
// replace it fails if path exists (also one made since it was checked);
// with it, path is replaced whole or not at all.
func writePrivate(path string, data []byte, replace bool) (err error) {
	if !replace {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) {
			return errors.Newf("%s exists: give another --out, or --force to replace it", path)
		}
		if err != nil {
			return errors.Wrapf(err, "write %s", path)
		}
		if err := writeAndSync(f, data); err != nil {
			os.Remove(path)
			return errors.Wrapf(err, "write %s", path)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return errors.Wrapf(err, "write %s", path)
	}
	tmp := f.Name()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(tmp)
		return errors.Wrapf(err, "write %s", path)
	}
	if err := writeAndSync(f, data); err != nil {
		os.Remove(tmp)
		return errors.Wrapf(err, "write %s", path)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return errors.Wrapf(err, "write %s", path)
	}
	return nil
}

// writeAndSync writes data to f, syncs and closes it.
func writeAndSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
