package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"

	"tdb/internal/pgserver"
)

func init() { register(newPGCmd) }

// newPGCmd runs a local PostgreSQL in the foreground, for a Procfile
// cluster's backend. Its superuser URL is printed and written to DIR/url.
func newPGCmd() *cobra.Command {
	var dataDir, password string
	var port int
	cmd := &cobra.Command{
		Use:   "pg --data-dir DIR [--port N] [--password PW]",
		Short: "Run a local PostgreSQL backend in the foreground (initdb on first use); Ctrl-C stops it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return errors.New("--data-dir is required")
			}
			dir, err := filepath.Abs(dataDir)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return errors.Wrapf(err, "create %s", dir)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logf := func(format string, args ...any) { cmd.PrintErrf(format+"\n", args...) }
			pg, err := pgserver.Start(ctx, pgserver.Options{Dir: filepath.Join(dir, "postgres"), Port: port, Password: password, Logf: logf})
			if err != nil {
				return errors.Wrap(err, "start PostgreSQL")
			}
			if err := os.WriteFile(filepath.Join(dir, "url"), []byte(pg.URL()+"\n"), 0o600); err != nil {
				_ = pg.Stop()
				return errors.Wrap(err, "write url file")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "PostgreSQL ready: %s\n(also in %s)\n", pg.URL(), filepath.Join(dir, "url"))
			<-ctx.Done()
			return pg.Stop()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory for the server's data, socket, log and url file")
	cmd.Flags().IntVar(&port, "port", 0, "TCP port on 127.0.0.1 (default: the last one used, or a free one)")
	cmd.Flags().StringVar(&password, "password", "", "superuser password on first start (default: random; kept in the data dir)")
	return cmd
}
