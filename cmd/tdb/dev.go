package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"

	"tdb/internal/pgserver"
	"tdb/node"
	"tdb/wire"
)

func init() { register(newDevCmd) }

// devState is what `tdb dev` remembers between runs in DIR/dev.json.
type devState struct {
	AdminKey      string `json:"admin_key"`
	RaftAddr      string `json:"raft_addr"`
	ProjectID     string `json:"project_id,omitempty"`
	ProxyPassword string `json:"proxy_password,omitempty"`
	// PGPort is the local PostgreSQL's port. The node reaches it as the
	// backend registered on the first run, at this port (its Unix socket's
	// name has it too), so every later run keeps it.
	PGPort int `json:"pg_port,omitempty"`
}

// devOptions are the flags of `tdb dev`.
type devOptions struct {
	dataDir, wireAddr, httpAddr string
	proxyFrom                   []netip.Prefix
	pgMaxConnections            int
	lazyAttach                  bool
	goroutineRelay              bool
	relayLoops                  int
	relayNice                   int
	// restore is a metadata backup of a tdb dev node to restore
	// (devrestore.go); "" for none.
	restore string
}

// goroutineRelayHelp describes --goroutine-relay.
const goroutineRelayHelp = "relay every session with a goroutine per direction instead of the epoll loop " +
	"(by default the loop relays every client but those behind a PROXY protocol header)"

// relayLoopsHelp describes --relay-loops.
const relayLoopsHelp = "how many epoll loops relay sessions, each on a thread of its own (new sessions fill the first up to 16, then go to the one relaying fewest); " +
	"0: one per 4 of --procs, at least 2 (1 with --procs 1)"

// relayLoopsFlag adds --relay-loops to a command that runs a node; a count
// outside 0..node.MaxRelayLoops is refused when the flags are parsed, before
// anything starts (0, the default, is node.DefaultRelayLoops).
func relayLoopsFlag(cmd *cobra.Command, p *int) {
	rangeFlag(cmd, p, "relay-loops", 0, 0, node.MaxRelayLoops, relayLoopsHelp,
		fmt.Sprintf("must be a whole number from 0 (one loop per 4 of --procs) to %d", node.MaxRelayLoops))
}

// relayNiceHelp describes --relay-nice.
const relayNiceHelp = "niceness of the relay loops' threads, -20 to 19 (below the process's needs root or CAP_SYS_NICE; " +
	"without it the loops keep the process's and the node says so)"

// relayNiceFlag adds --relay-nice (default 0). Where PostgreSQL shares the
// cores with many busy backends, the one thread relaying for all of them
// waits behind them; on the 2-core machine of BENCHMARKS.md -10 gave +12% tps
// at 256 clients, nothing at 32 and -4% at 1 (the loop's wake-ups preempt
// the backend it just served), so it is not the default.
func relayNiceFlag(cmd *cobra.Command, p *int) {
	rangeFlag(cmd, p, "relay-nice", 0, node.MinRelayNice, node.MaxRelayNice, relayNiceHelp,
		fmt.Sprintf("must be a whole number from %d to %d", node.MinRelayNice, node.MaxRelayNice))
}

// rangeFlag adds an integer flag that refuses values outside lo..hi while
// the flags are parsed, with the reason why.
func rangeFlag(cmd *cobra.Command, p *int, name string, def, lo, hi int, help, why string) {
	*p = def
	cmd.Flags().Var(&rangeValue{p: p, lo: lo, hi: hi, why: why}, name, help)
}

// rangeValue is the pflag.Value behind rangeFlag.
type rangeValue struct {
	p      *int
	lo, hi int
	why    string
}

func (v *rangeValue) String() string { return strconv.Itoa(*v.p) }
func (v *rangeValue) Type() string   { return "int" }
func (v *rangeValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.lo || n > v.hi {
		return errors.New(v.why)
	}
	*v.p = n
	return nil
}

// lazyAttachHelp describes --lazy-backend-attach.
const lazyAttachHelp = "log clients in without a backend session when none is idle and attach one at their first message " +
	"(idle clients hold no backend; the BackendKeyData pid is then not the backend's, so SQL pg_cancel_backend(pid) does not reach it)"

func newDevCmd() *cobra.Command {
	var o devOptions
	var proxyFrom string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a single-node cluster with its own local PostgreSQL and a demo project",
		Long: `Run a single-node cluster with its own local PostgreSQL and a demo project.

The data directory holds the node's metadata (raft state, TLS) in node/, the local
PostgreSQL with the tenant databases in postgres/, and dev.json and env, which keep
the admin key and the demo project's proxy_password.

--restore FILE restores a metadata backup of a tdb dev node (tdb cluster backup) into
a data directory that lost node/ but kept postgres/: the backup names that PostgreSQL as
its backend local, by its socket directory, port and password, so the data directory
must be at the path of the backed-up one. It refuses, changing nothing, a data directory
whose node/ holds anything, one without that PostgreSQL, a backup with other backends
(restore those with tdb server --restore), and a backup the build cannot read or run.
Give --restore on the first start only; restart without it. Without --restore, tdb dev
refuses a data directory whose dev.json names a project and whose node/raft is gone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var err error
			if o.proxyFrom, err = node.ParseCIDRs(proxyFrom); err != nil {
				return err
			}
			return runDev(ctx, cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "tdb-data", "directory for all state (raft, PostgreSQL, TLS, env)")
	cmd.Flags().StringVar(&o.wireAddr, "wire-addr", "127.0.0.1:5433", "PostgreSQL wire proxy listen address")
	cmd.Flags().StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP control plane listen address")
	cmd.Flags().StringVar(&proxyFrom, "proxy-protocol-from", "", "load balancers (CIDRs, comma separated) whose connections carry a PROXY v1/v2 header")
	cmd.Flags().StringVar(&proxyFrom, "proxy-protocol", "", "the same as --proxy-protocol-from")
	cmd.Flags().StringVar(&o.restore, "restore", "", "restore a metadata backup of a tdb dev node (tdb cluster backup) into --data-dir, whose node/ must be empty or absent and whose postgres/ must be the backed-up node's PostgreSQL; first start only (restart without it)")
	cmd.Flags().IntVar(&o.pgMaxConnections, "pg-max-connections", 300, "max_connections of the local PostgreSQL")
	cmd.Flags().BoolVar(&o.lazyAttach, "lazy-backend-attach", false, lazyAttachHelp)
	cmd.Flags().BoolVar(&o.goroutineRelay, "goroutine-relay", false, goroutineRelayHelp)
	relayLoopsFlag(cmd, &o.relayLoops)
	relayNiceFlag(cmd, &o.relayNice)
	runtimeFlags(cmd, halfTheCPUs) // the local PostgreSQL shares this machine
	return cmd
}

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	dataDir, wireAddr, httpAddr, proxyFrom := o.dataDir, o.wireAddr, o.httpAddr, o.proxyFrom
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	var restore *devRestore
	if o.restore != "" {
		b, err := readBackupFile(o.restore)
		if err != nil {
			return err
		}
		if restore, err = checkDevRestore(dataDir, o.restore, b); err != nil {
			return err
		}
	} else if err := checkDevMetadata(dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return errors.Wrapf(err, "create %s", dataDir)
	}
	st, err := loadDevState(dataDir)
	if err != nil {
		return err
	}
	pgDir := filepath.Join(dataDir, "postgres")
	pgPort := st.PGPort
	if pgPort == 0 && st.ProjectID != "" {
		// A data dir of a build that did not record the port: the backend
		// was registered at the port PostgreSQL recorded.
		pgPort = pgserver.RecordedPort(pgDir)
	}
	var pgPassword string
	if restore != nil {
		if restore.pgPort != 0 {
			pgPort, pgPassword = restore.pgPort, restore.pgPassword
		}
		if restore.projectID != st.ProjectID {
			st.ProjectID, st.ProxyPassword = restore.projectID, ""
		}
	}
	fmt.Fprintf(out, "starting PostgreSQL in %s ...\n", pgDir)
	pg, err := pgserver.Start(ctx, pgserver.Options{
		Dir: pgDir, Port: pgPort, Password: pgPassword, MaxConnections: o.pgMaxConnections, Logf: func(f string, a ...any) {},
		Warnf: func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) },
	})
	if err != nil {
		if pgPort != 0 && errors.Is(err, pgserver.ErrPortInUse) {
			return errors.Newf("start local PostgreSQL: port %d, where this node reaches it (backend local), is taken by another process: "+
				"stop that process and run tdb dev again", pgPort)
		}
		return errors.Wrap(err, "start local PostgreSQL")
	}
	defer pg.Stop()
	if st.PGPort != pg.Port() || restore != nil {
		st.PGPort = pg.Port()
		if err := saveDevState(dataDir, st); err != nil {
			return err
		}
	}

	cfg := node.Config{
		NodeID:                 "dev",
		DataDir:                filepath.Join(dataDir, "node"),
		WireAddr:               wireAddr,
		HTTPAddr:               httpAddr,
		RaftAddr:               st.RaftAddr,
		Bootstrap:              true,
		AdminKey:               st.AdminKey,
		AllowLoopbackPlaintext: true,
		LogOutput:              os.Stderr,
		ProxyProtocolFrom:      proxyFrom,
		LazyBackendAttach:      o.lazyAttach,
		GoroutineRelay:         o.goroutineRelay,
		RelayLoops:             o.relayLoops,
		RelayNice:              o.relayNice,
	}
	if restore != nil {
		cfg.Restore = restore.backup
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Stop()
	if restore != nil {
		fmt.Fprintln(out, restoredSummary(o.restore, restore.backup, n.Replica().ClusterID()))
	}

	api := &devClient{base: "http://" + n.HTTPAddr(), key: st.AdminKey}
	if err := api.ensureBackend(ctx, pg.LocalURL()); err != nil {
		return err
	}
	if st.ProjectID == "" {
		var resp struct {
			ProjectID     string `json:"project_id"`
			ProxyPassword string `json:"proxy_password"`
		}
		if err := api.do(ctx, "POST", "/v1/projects", "", map[string]string{"name": "demo"}, &resp); err != nil {
			return errors.Wrap(err, "create demo project")
		}
		st.ProjectID, st.ProxyPassword = resp.ProjectID, resp.ProxyPassword
		if err := saveDevState(dataDir, st); err != nil {
			return err
		}
	}
	if st.ProxyPassword == "" {
		// Restored without the dev.json that kept it: the backup holds
		// the keys' verifiers, never their secrets.
		var key struct {
			Key string `json:"key"`
		}
		body := map[string]any{"name": "proxy_password", "role": "admin", "scope_type": "project"}
		if err := api.do(ctx, "POST", "/v1/apikeys", st.ProjectID, body, &key); err != nil {
			return errors.Wrap(err, "create a proxy_password for the restored demo project")
		}
		st.ProxyPassword = key.Key
		if err := saveDevState(dataDir, st); err != nil {
			return err
		}
		fmt.Fprintf(out, "the backup holds no key's secret: the demo project's proxy_password below is a new admin key of it (its earlier keys still work)\n")
	}
	for _, ws := range []struct{ name, mode string }{{"controlplane", "control"}, {"myapp", "tenant"}} {
		err := api.do(ctx, "POST", "/v1/workspaces", st.ProjectID, map[string]string{"name": ws.name, "mode": ws.mode}, nil)
		if err != nil && !strings.Contains(err.Error(), "conflict") {
			return errors.Wrapf(err, "create workspace %s", ws.name)
		}
	}

	wire := n.WireAddr()
	// The wire proxy's self-signed certificate: node-postgres reads
	// sslmode=require as verify-full, and trusts it through this variable.
	cert := filepath.Join(dataDir, "node", "tls", tlsCertFile)
	env := fmt.Sprintf("TDB_API_URL=http://%s\nTDB_API_KEY=%s\nTDB_PROJECT_ID=%s\nTDB_WIRE_ADDR=%s\nTDB_ADMIN_KEY=%s\nTDB_BACKEND_URL=%s\nTDB_TLS_CERT=%s\nNODE_EXTRA_CA_CERTS=%s\n",
		n.HTTPAddr(), st.ProxyPassword, st.ProjectID, wire, st.AdminKey, pg.URL(), cert, cert)
	if err := os.WriteFile(filepath.Join(dataDir, "env"), []byte(env), 0o600); err != nil {
		return errors.Wrap(err, "write env file")
	}
	fmt.Fprintf(out, `
tdb dev is ready.

  project id:      %[1]s
  proxy_password:  %[2]s
  control plane:   http://%[3]s
  wire proxy:      %[4]s

  psql "postgresql://%[1]s:%[2]s@%[4]s/controlplane_workspace?sslmode=require"
  psql "postgresql://%[1]s:%[2]s@%[4]s/myapp_workspace?sslmode=require"

  TLS certificate: %[6]s (self-signed for localhost and 127.0.0.1;
  the env file sets NODE_EXTRA_CA_CERTS to it, which node-postgres needs with sslmode=require)

From another shell:
  set -a; . %[5]s; set +a
  go run ./cmd/tdb tenants create --blueprint myapp --name wayne

Press Ctrl-C to stop.
`, st.ProjectID, st.ProxyPassword, n.HTTPAddr(), wire, filepath.Join(dataDir, "env"), cert)
	<-ctx.Done()
	fmt.Fprintln(out, "stopping ...")
	return nil
}

// tlsCertFile is the certificate file a node makes in its data dir's tls/.
const tlsCertFile = wire.CertFileName

func loadDevState(dir string) (*devState, error) {
	path := filepath.Join(dir, "dev.json")
	st := &devState{}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, st); err != nil {
			return nil, errors.Wrapf(err, "read %s", path)
		}
		return st, nil
	case !os.IsNotExist(err):
		return nil, errors.Wrapf(err, "read %s", path)
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	st.AdminKey = "sk_admin_" + hex.EncodeToString(b)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	st.RaftAddr = fmt.Sprintf("127.0.0.1:%d", port)
	return st, saveDevState(dir, st)
}

func saveDevState(dir string, st *devState) error {
	data, _ := json.MarshalIndent(st, "", "  ")
	return errors.Wrap(os.WriteFile(filepath.Join(dir, "dev.json"), data, 0o600), "write dev state")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, errors.Wrap(err, "find a free port")
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// devClient is the few control-plane calls `tdb dev` makes on its own node.
type devClient struct{ base, key string }

func (c *devClient) ensureBackend(ctx context.Context, url string) error {
	err := c.do(ctx, "POST", "/v1/backends", "", map[string]string{"name": "local", "url": url}, nil)
	if err != nil && strings.Contains(err.Error(), "conflict") {
		return nil // registered by an earlier run
	}
	return errors.Wrap(err, "register the local backend")
}

func (c *devClient) do(ctx context.Context, method, path, project string, body, out any) error {
	data, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	if project != "" {
		req.Header.Set("X-Tdb-Project", project)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct{ Code, Message string }
		_ = json.Unmarshal(raw, &e)
		return errors.Newf("%s %s: %s (%s)", method, path, e.Message, e.Code)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
