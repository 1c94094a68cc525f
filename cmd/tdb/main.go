package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"
)

// commands are the subcommand constructors registered by this package's files.
var commands []func() *cobra.Command

// register adds a subcommand constructor; call it from an init function.
func register(f func() *cobra.Command) { commands = append(commands, f) }

// Global flag names.
const (
	flagAPIURL   = "api-url"
	flagAPIKey   = "api-key"
	flagAdminKey = "admin-key"
	flagProject  = "project"
	flagJSON     = "json"
	flagQuiet    = "quiet"
)

func main() {
	// Subcommands see the cancellation through cmd.Context().
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status: 0 on success,
// 1 with a one-line error on stderr otherwise.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "tdb: "+errorLine(err))
		return 1
	}
	return 0
}

// newRootCommand builds the command tree; flag defaults come from the
// environment at this point.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tdb",
		Short:         "tdb: multi-tenant PostgreSQL",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	pf := root.PersistentFlags()
	pf.String(flagAPIURL, envOr("TDB_API_URL", "http://127.0.0.1:8080"), "control plane URL (env TDB_API_URL)")
	// Secrets are read from the environment only when used, so that --help
	// never prints them as defaults.
	pf.String(flagAPIKey, "", "API key or proxy_password (env TDB_API_KEY)")
	pf.String(flagAdminKey, "", "the cluster operator's admin key, used for operator commands (env TDB_ADMIN_KEY)")
	pf.String(flagProject, "", "project the admin key acts in when no --api-key is given (env TDB_PROJECT_ID)")
	pf.Bool(flagJSON, false, "print the API's JSON document on stdout")
	pf.Bool(flagQuiet, false, "print nothing on success")
	for _, f := range commands {
		root.AddCommand(f())
	}
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group fail on a word it does
// not know: cobra would print the group's help and exit 0, so a script's
// `tdb tenants delet wayne` would look done. The root does this already.
func refuseUnknownSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return errors.Newf("unknown command %q for %q", args[0], cmd.CommandPath())
				}
				return nil
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		refuseUnknownSubcommands(c)
	}
}

// flagOrEnv is a string flag's value, or the environment variable's when the
// flag is empty.
func flagOrEnv(cmd *cobra.Command, flag, env string) string {
	if v, _ := cmd.Flags().GetString(flag); v != "" {
		return v
	}
	return os.Getenv(env)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// errorLine renders an error as one line: API errors end with their code.
func errorLine(err error) string {
	var ae *apiError
	msg := err.Error()
	if errors.As(err, &ae) {
		msg = fmt.Sprintf("%s (%s)", ae.Message, ae.Code)
	}
	return strings.Join(strings.Fields(msg), " ")
}
