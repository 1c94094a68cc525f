package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// runConfig is what `chaos run` takes.
type runConfig struct {
	duration time.Duration
	seed     uint64
	out      string   // report directory; "" = a temp dir
	procfile string   // the Procfile the cluster comes from
	bin      string   // a built tdb binary; "" = build one
	keep     bool     // keep the run's data dir
	faults   []string // fault kinds to draw from
	quiet    time.Duration
	hold     time.Duration
	env      []string // extra environment for the nodes (TDB_CHAOS_BREAK=… in the harness's own test)
	ops      []string // optional workloads (ddl.go); none by default
	stdout   io.Writer
}

// runner is one chaos run.
type runner struct {
	cfg       runConfig
	c         *cluster
	hist      *history
	out       io.Writer
	projectID string
	proxyPW   string
	stable    []stableTenant

	mu     sync.Mutex
	faults []Fault
}

func parseRunFlags(args []string, stderr io.Writer) (runConfig, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := runConfig{}
	fs.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long to inject faults under load")
	fs.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "seed of the fault schedule and the load")
	fs.StringVar(&cfg.out, "out", "", "directory for report.json, history.html and the nodes' logs (default: a temp dir)")
	fs.StringVar(&cfg.procfile, "f", "Procfile", "the Procfile the cluster comes from")
	fs.StringVar(&cfg.bin, "bin", "", "a built tdb binary (default: go build ./cmd/tdb)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the cluster's data dirs")
	faults := fs.String("faults", strings.Join(allFaults, ","), "fault kinds to draw from")
	fs.DurationVar(&cfg.quiet, "quiet", 4*time.Second, "longest gap between faults")
	fs.DurationVar(&cfg.hold, "hold", 7*time.Second, "longest time a fault is held")
	ops := fs.String("ops", "", "optional workloads, comma-separated: "+strings.Join(allOps, ", ")+" (schema capture in a tenant workspace, deployments)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, errors.Newf("unexpected arguments %v", fs.Args())
	}
	for _, k := range strings.Split(*faults, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		known := false
		for _, a := range allFaults {
			known = known || a == k
		}
		if !known {
			return cfg, errors.Newf("unknown fault %q (known: %s)", k, strings.Join(allFaults, ", "))
		}
		cfg.faults = append(cfg.faults, k)
	}
	if len(cfg.faults) == 0 {
		return cfg, errors.New("--faults names no fault")
	}
	var err error
	if cfg.ops, err = parseOps(*ops); err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, err
	}
	return cfg, nil
}

// chaosRun runs the whole scenario and returns the report; err is a failure
// to run it at all (the report's Violations says whether the cluster broke
// a promise).
func chaosRun(ctx context.Context, cfg runConfig) (*Report, error) {
	if cfg.stdout == nil {
		cfg.stdout = os.Stdout
	}
	if cfg.out == "" {
		d, err := os.MkdirTemp("", "tdb-chaos-out-")
		if err != nil {
			return nil, err
		}
		cfg.out = d
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tdb-chaos-")
	if err != nil {
		return nil, err
	}
	// PostgreSQL runs as the postgres user when we are root: its dirs must be
	// traversable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	start := time.Now()
	r := &runner{cfg: cfg, hist: newHistory(start), out: cfg.stdout}
	r.say("chaos run: seed %d, duration %s, faults %s, data %s, report %s", cfg.seed, cfg.duration, strings.Join(cfg.faults, ","), dir, cfg.out)
	if len(cfg.ops) > 0 {
		r.say("optional workloads: %s", strings.Join(cfg.ops, ","))
	}

	bin := cfg.bin
	if bin == "" {
		bin = filepath.Join(dir, "tdb")
		r.say("go build -o %s ./cmd/tdb", bin)
		b := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tdb")
		b.Dir = filepath.Dir(mustAbs(cfg.procfile))
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return nil, errors.Wrap(err, "build tdb")
		}
	}
	c, err := startCluster(ctx, cfg.procfile, bin, dir, cfg.env, r.say)
	if err != nil {
		return nil, err
	}
	r.c = c
	defer func() {
		c.stop()
		copyLogs(filepath.Join(dir, "logs"), filepath.Join(cfg.out, "logs"))
	}()
	if err := r.setup(ctx); err != nil {
		return nil, errors.Wrap(err, "set up the project")
	}
	r.say("cluster up: %s; load and faults for %s", strings.Join(c.names(), ", "), cfg.duration)

	loadCtx, stopLoad := context.WithCancel(ctx)
	faultCtx, stopFaults := context.WithTimeout(ctx, cfg.duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.runLoad(loadCtx) }()
	r.runFaults(faultCtx)
	stopFaults()
	// Everything is healed by now; let the load run on a healed cluster for
	// a moment, then stop it and wait for the replicas to converge.
	r.heal()
	sleepCtx(ctx, 2*time.Second)
	stopLoad()
	wg.Wait()
	end := r.hist.now()
	r.say("load stopped after %d operations; checking", len(r.hist.snapshot()))
	rep := r.check(ctx, end)
	rep.Out = cfg.out
	if err := rep.write(cfg.out); err != nil {
		return rep, err
	}
	return rep, nil
}

// heal lifts every fault that may still hold (none should).
func (r *runner) heal() {
	r.c.net.heal()
	for _, mb := range r.c.members {
		if !mb.running() {
			if err := r.c.start(mb); err != nil {
				r.say("restart %s: %v", mb.name, err)
			}
		} else {
			r.c.signal(mb, syscall.SIGCONT)
		}
	}
	r.waitRecovered(60 * time.Second)
}

// setup registers the backend, creates the project, the myapp blueprint
// with an items table, and the stable tenants the insert clients use.
func (r *runner) setup(ctx context.Context) error {
	c := r.c
	n0 := c.members[0]
	if code, raw, err := c.call(ctx, n0, "POST", "/v1/backends", c.adminKey, map[string]string{"name": "local", "url": c.pgURL}); err != nil || code/100 != 2 {
		return errors.Newf("add backend: %d %s %v", code, raw, err)
	}
	var proj struct {
		ProjectID     string `json:"project_id"`
		ProxyPassword string `json:"proxy_password"`
	}
	code, raw, err := c.call(ctx, n0, "POST", "/v1/projects", c.adminKey, map[string]string{"name": "chaos"})
	if err != nil || code/100 != 2 || json.Unmarshal(raw, &proj) != nil {
		return errors.Newf("create project: %d %s %v", code, raw, err)
	}
	r.projectID, r.proxyPW = proj.ProjectID, proj.ProxyPassword
	if code, raw, err := c.call(ctx, n0, "POST", "/v1/workspaces", r.proxyPW, map[string]string{"name": "myapp", "mode": "tenant"}); err != nil || code/100 != 2 {
		return errors.Newf("create workspace: %d %s %v", code, raw, err)
	}
	if err := r.retryWire(ctx, n0, r.proxyPW, "myapp_workspace",
		"CREATE TABLE items (id text PRIMARY KEY, tenant text NOT NULL, node text NOT NULL, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return errors.Wrap(err, "create the items table")
	}
	for i := range 2 {
		name := fmt.Sprintf("stable%d", i)
		var t struct {
			ConnectionString string `json:"connection_string"`
		}
		code, raw, err := c.callTimeout(ctx, n0, "POST", "/v1/tenants", r.proxyPW, map[string]string{"name": name, "blueprint": "myapp"}, 60*time.Second)
		if err != nil || code != 201 || json.Unmarshal(raw, &t) != nil {
			return errors.Newf("create tenant %s: %d %s %v", name, code, raw, err)
		}
		u, err := url.Parse(t.ConnectionString)
		if err != nil {
			return err
		}
		pw, _ := u.User.Password()
		var got struct {
			PhysicalDatabase string `json:"physical_database"`
		}
		code, raw, err = c.call(ctx, n0, "GET", "/v1/tenants/"+name, r.proxyPW, nil)
		if err != nil || code != 200 || json.Unmarshal(raw, &got) != nil || got.PhysicalDatabase == "" {
			return errors.Newf("read tenant %s: %d %s %v", name, code, raw, err)
		}
		r.stable = append(r.stable, stableTenant{name: name, key: pw, physical: got.PhysicalDatabase})
		// The tenant key's creation, for the model: acknowledged now.
		r.hist.record(Op{Kind: opKeyCreate, Node: n0.name, Subject: "tenant-" + name, Call: 0, Return: r.hist.now(), Outcome: outOK, Detail: "setup"})
	}
	if len(r.cfg.ops) > 0 {
		return r.setupSchema(ctx)
	}
	return nil
}

// retryWire runs one statement through the wire proxy, retrying while the
// database is still being provisioned.
func (r *runner) retryWire(ctx context.Context, mb *member, password, database, sql string) error {
	var last error
	for range 100 {
		cfg, err := r.connConfig(mb, password, database, nil)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		conn, err := pgx.ConnectConfig(cctx, cfg)
		if err == nil {
			_, err = conn.Exec(cctx, sql)
			conn.Close(cctx)
			if err == nil {
				cancel()
				return nil
			}
		}
		cancel()
		last = err
		if !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	return last
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// copyLogs copies the nodes' logs into the report directory.
func copyLogs(from, to string) {
	entries, err := os.ReadDir(from)
	if err != nil {
		return
	}
	_ = os.MkdirAll(to, 0o755)
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join(from, e.Name())); err == nil {
			_ = os.WriteFile(filepath.Join(to, e.Name()), data, 0o644)
		}
	}
}
