package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"tdb/httpapi"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"
)

func init() { register(newDeploymentsCmd) }

// printDeployment prints a deployment and its tenants' results: all of them,
// or (onlyProblems) those not done.
func printDeployment(w io.Writer, d deploymentOut, onlyProblems bool) {
	printFields(w,
		field{"id", d.ID}, field{"blueprint", d.Blueprint}, field{"target_version", d.TargetVersion},
		field{"status", d.Status},
		field{"tenants", fmt.Sprintf("%d total, %d completed, %d failed", d.TenantsTotal, d.TenantsCompleted, d.TenantsFailed)},
		field{"created_at", d.CreatedAt})
	var rows [][]any
	var results []httpapi.DeploymentResult
	if d.Results != nil {
		results = *d.Results
	}
	for _, r := range results {
		if onlyProblems && r.Status == "done" {
			continue
		}
		rows = append(rows, []any{r.TenantID, r.Status, fmt.Sprintf("%d→%d", r.FromVersion, r.Version), r.DurationMs, oneLine(r.Error, 100)})
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		printTable(w, []string{"TENANT", "STATUS", "VERSION", "MS", "ERROR"}, rows)
	}
}

func newDeploymentsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "deployments", Short: "Roll blueprint versions out to tenants"}

	var blueprint string
	var version, concurrency int
	var all, wait bool
	var poll time.Duration
	create := &cobra.Command{
		Use:   "create --blueprint NAME [--version N] --all [--wait]",
		Short: "Apply the blueprint versions each tenant lacks, up to --version (default: the latest)",
		Long: `Apply the blueprint versions each tenant lacks, in order, each version in its own
transaction, to every tenant of the blueprint. A tenant that fails (its schema drifted,
or it stayed busy past the lock timeout and retries) does not stop the others; rerun the
same command after fixing it and only what is left is done. With --wait the command
follows the deployment (a progress bar on a terminal) and exits non-zero if it failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !all {
				return errors.New("deployments go to every tenant of the blueprint: pass --all")
			}
			body := map[string]any{"blueprint": blueprint, "all": true}
			if version > 0 {
				body["version"] = version
			}
			if concurrency > 0 {
				body["concurrency"] = concurrency
			}
			if !wait {
				return request(cmd, false, "POST", "/v1/deployments", body, func(w io.Writer, d deploymentOut) {
					printDeployment(w, d, false)
				})
			}
			c, err := newClient(cmd, false)
			if err != nil {
				return err
			}
			var d deploymentOut
			if _, err := c.call(cmd.Context(), "POST", "/v1/deployments", body, &d); err != nil {
				return err
			}
			return follow(cmd, c, "/v1/deployments/"+url.PathEscape(d.ID), poll, "deployment", "tdb deployments status", nil, printProblems)
		},
	}
	create.Flags().StringVar(&blueprint, "blueprint", "", "blueprint (tenant-mode workspace) to deploy")
	create.Flags().IntVar(&version, "version", 0, "version to bring tenants to (default: the latest)")
	create.Flags().BoolVar(&all, "all", false, "deploy to every tenant of the blueprint (required)")
	create.Flags().IntVar(&concurrency, "concurrency", 0, "tenants worked on at once (default 4)")
	create.Flags().BoolVar(&wait, "wait", false, "follow the deployment until it ends; exit non-zero if it failed")
	create.Flags().DurationVar(&poll, "poll", 500*time.Millisecond, "how often --wait asks for progress")
	_ = create.Flags().MarkHidden("poll")
	_ = create.MarkFlagRequired("blueprint")

	var statusWait bool
	status := &cobra.Command{
		Use:   "status ID [--wait]",
		Short: "Show a deployment and every tenant's result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if statusWait {
				c, err := newClient(cmd, false)
				if err != nil {
					return err
				}
				return follow(cmd, c, "/v1/deployments/"+url.PathEscape(args[0]), poll, "deployment", "tdb deployments status", nil, printProblems)
			}
			return request(cmd, false, "GET", "/v1/deployments/"+url.PathEscape(args[0]), nil, func(w io.Writer, d deploymentOut) {
				printDeployment(w, d, false)
			})
		},
	}
	status.Flags().BoolVar(&statusWait, "wait", false, "follow the deployment until it ends; exit non-zero if it failed")
	status.Flags().DurationVar(&poll, "poll", 500*time.Millisecond, "how often --wait asks for progress")
	_ = status.Flags().MarkHidden("poll")

	var filter string
	list := &cobra.Command{
		Use:   "list [--blueprint NAME]",
		Short: "List deployments, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/deployments"
			if filter != "" {
				path += "?blueprint=" + url.QueryEscape(filter)
			}
			return request(cmd, false, "GET", path, nil, func(w io.Writer, ds []deploymentOut) {
				rows := make([][]any, 0, len(ds))
				for _, d := range ds {
					rows = append(rows, []any{d.ID, d.Blueprint, d.TargetVersion, d.Status,
						fmt.Sprintf("%d/%d", d.TenantsCompleted, d.TenantsTotal), d.TenantsFailed, d.CreatedAt})
				}
				printTable(w, []string{"ID", "BLUEPRINT", "VERSION", "STATUS", "DONE", "FAILED", "CREATED"}, rows)
			})
		},
	}
	list.Flags().StringVar(&filter, "blueprint", "", "only deployments of this blueprint")

	cmd.AddCommand(create, status, list)
	return cmd
}

// followable is a long-running job's document: deployments and imports.
type followable interface {
	// progressOf returns the job's id, status and tenant counts.
	progressOf() (id, status string, finished, failed, total int)
}

// deploymentOut is a deployment as the API returns it, followable.
type deploymentOut httpapi.Deployment

func (d deploymentOut) progressOf() (string, string, int, int, int) {
	return d.ID, d.Status, d.TenantsCompleted + d.TenantsFailed, d.TenantsFailed, d.TenantsTotal
}

// follow polls a job (GET path) until it is no longer in progress, showing
// progress on stderr (a bar on a terminal, a line per change otherwise),
// then prints it like any command, with human for people. A failed job is
// an error; what names it ("deployment", "import") and statusCmd tells how
// to look at it again.
//
// patch, if not nil, rewrites each polled document (before it is decoded).
func follow[T followable](cmd *cobra.Command, c *client, path string, poll time.Duration, what, statusCmd string,
	patch func([]byte) []byte, human func(io.Writer, T)) error {
	quiet, _ := cmd.Flags().GetBool(flagQuiet)
	asJSON, _ := cmd.Flags().GetBool(flagJSON)
	// Progress goes to stderr, never with --json or --quiet: stdout stays one
	// document and a script's stderr holds only the error line.
	progress := newProgress(cmd.ErrOrStderr(), quiet || asJSON, what)
	var raw []byte
	var v T
	for {
		var err error
		var zero T
		v = zero
		if raw, err = c.call(cmd.Context(), "GET", path, nil, nil); err != nil {
			progress.end()
			return err
		}
		if patch != nil {
			raw = patch(raw)
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			progress.end()
			return errors.Wrapf(err, "decode %s", path)
		}
		progress.show(v)
		if _, status, _, _, _ := v.progressOf(); status != "in_progress" {
			break
		}
		select {
		case <-cmd.Context().Done():
			progress.end()
			id, _, _, _, _ := v.progressOf()
			return errors.Newf("stopped waiting; the %s goes on: %s %s", what, statusCmd, id)
		case <-time.After(poll):
		}
	}
	progress.end()
	w := cmd.OutOrStdout()
	switch {
	case asJSON:
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	case !quiet:
		human(w, v)
	}
	if id, status, _, failed, total := v.progressOf(); status != "completed" {
		return errors.Newf("%s %s %s: %d of %d tenants failed (%s %s)", what, id, status, failed, total, statusCmd, id)
	}
	return nil
}

// printProblems prints a finished deployment with the tenants not done.
func printProblems(w io.Writer, d deploymentOut) { printDeployment(w, d, true) }

// progress renders a job's progress on w.
type progress struct {
	w     io.Writer
	what  string
	tty   bool
	off   bool
	last  string
	drawn bool
}

func newProgress(w io.Writer, quiet bool, what string) *progress {
	return &progress{w: w, what: what, tty: isTerminal(w), off: quiet}
}

// isTerminal reports whether w is a character device (a terminal) other
// than the null device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}

const barWidth = 30

func (p *progress) show(job followable) {
	if p.off {
		return
	}
	id, _, finished, nfailed, total := job.progressOf()
	failed := ""
	if nfailed > 0 {
		failed = fmt.Sprintf(", %d failed", nfailed)
	}
	if !p.tty {
		line := fmt.Sprintf("%s %s: %d/%d tenants finished%s", p.what, id, finished, total, failed)
		if line != p.last {
			fmt.Fprintln(p.w, line)
			p.last = line
		}
		return
	}
	filled := barWidth
	if total > 0 {
		filled = barWidth * finished / total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d%s ", strings.Repeat("#", filled), strings.Repeat(" ", barWidth-filled), finished, total, failed)
	p.drawn = true
}

// end finishes the bar's line.
func (p *progress) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
