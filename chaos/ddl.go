package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/httpapi"
)

// The optional schema workload (--ops capture,deploy; off by default):
//
//   - capture: clients connect to the workspace database of ddlWorkspace on
//     random nodes with the project's admin key and run DDL, one statement
//     per transaction (CREATE TABLE t_N, ALTER TABLE … ADD COLUMN c_N,
//     CREATE INDEX i_N), each naming an object no other statement names;
//   - deploy: a client creates deployments of the latest version to every
//     tenant of ddlWorkspace, and now and then a tenant of it.
//
// checkSchema then finds every DDL acknowledged without a warning in
// exactly one blueprint version, checks that versions are in the order the
// DDL committed (a DDL acknowledged before another was sent has the lower
// version), replays the versions on a fresh database and compares it with
// the workspace database, and, after a final deployment, compares every
// tenant's database with it too. A DDL told by the 01000 WARNING that it
// was not recorded, or whose outcome is unknown, is reported and counted;
// if it committed, the workspace's DDL journal holds it and the last DDL
// (lastDDL) records it before the schemas are compared.

// Optional workloads.
const (
	opsCapture = "capture"
	opsDeploy  = "deploy"
)

var allOps = []string{opsCapture, opsDeploy}

// ddlWorkspace is the tenant workspace the schema workload writes to.
const ddlWorkspace = "ddlapp"

// Kinds of recorded operation of the schema workload.
const (
	opDDL          = "ddl"           // a DDL statement in the workspace database
	opDeploy       = "deploy"        // POST /v1/deployments
	opSchemaTenant = "schema_tenant" // POST /v1/tenants of ddlWorkspace
)

// outWarned: the DDL committed and the client was told by the 01000
// WARNING that it was not recorded as a blueprint version.
const outWarned = "warned"

// notRecorded is the start of the WARNING's text.
const notRecorded = "the DDL committed in the workspace but was not recorded"

// SchemaReport is the schema workload's part of the report.
type SchemaReport struct {
	Versions      int      `json:"versions"`
	DDLAcked      int      `json:"ddl_acked"`
	DDLWarned     []string `json:"ddl_warned,omitempty"`      // committed, told not recorded at the time
	WarnedInBP    []string `json:"warned_recorded,omitempty"` // warned, yet found in a version
	DDLUnknown    int      `json:"ddl_unknown"`
	UnknownInBP   int      `json:"unknown_recorded"`
	UnrecordedUnk []string `json:"unknown_unrecorded_in_workspace,omitempty"`
	Deployments   int      `json:"deployments"`
	DeployFailed  []string `json:"deployments_failed,omitempty"`
	Final         string   `json:"final_deployment"`
	Tenants       []string `json:"tenants_compared,omitempty"`
	// FromJournal counts the transactions the nodes recorded from the
	// workspace's DDL journal (their session did not, or may not have);
	// JournalUntold are the nodes' log lines about DDL the journal held
	// whose statements could not be told.
	FromJournal   int      `json:"recorded_from_journal"`
	JournalUntold []string `json:"journal_untold,omitempty"`
}

func parseOps(s string) ([]string, error) {
	var out []string
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.Contains(allOps, k) {
			return nil, errors.Newf("unknown workload %q (known: %s)", k, strings.Join(allOps, ", "))
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (cfg runConfig) has(op string) bool { return slices.Contains(cfg.ops, op) }

// setupSchema creates ddlWorkspace and two tenants of it.
func (r *runner) setupSchema(ctx context.Context) error {
	c := r.c
	n0 := c.members[0]
	if code, raw, err := c.call(ctx, n0, "POST", "/v1/workspaces", r.proxyPW, map[string]string{"name": ddlWorkspace, "mode": "tenant"}); err != nil || code/100 != 2 {
		return errors.Newf("create workspace %s: %d %s %v", ddlWorkspace, code, raw, err)
	}
	for i := range 2 {
		name := fmt.Sprintf("dt%d", i)
		code, raw, err := c.callTimeout(ctx, n0, "POST", "/v1/tenants", r.proxyPW, map[string]string{"name": name, "blueprint": ddlWorkspace}, 60*time.Second)
		if err != nil || code != 201 {
			return errors.Newf("create tenant %s: %d %s %v", name, code, raw, err)
		}
	}
	return nil
}

// schemaState is what the schema clients share: the tables and columns
// whose creation was acknowledged without a warning (a later statement
// names only those, so that no recorded version depends on one that was
// not).
type schemaState struct {
	mu     sync.Mutex
	tables []string
	cols   map[string][]string
	extra  int // tenants the deploy client created

	firstDDL int // the id of the DDL client that keeps its sessions
}

func (ls *loadState) startSchema(client int, goClient func(func(ctx context.Context, id int, rng *rand.Rand))) {
	ls.schema = &schemaState{cols: map[string][]string{}}
	if ls.r.cfg.has(opsCapture) {
		ls.schema.firstDDL = client
		for range 2 {
			goClient(ls.ddlClient)
		}
	}
	if ls.r.cfg.has(opsDeploy) {
		goClient(ls.deployClient)
	}
}

// nextDDL picks the next statement and the object it makes.
func (ls *loadState) nextDDL(rng *rand.Rand) (stmt, table, col string) {
	n := ls.nextSeq()
	s := ls.schema
	s.mu.Lock()
	defer s.mu.Unlock()
	p := rng.Float64()
	if len(s.tables) == 0 || p < 0.3 {
		t := fmt.Sprintf("t_%d", n)
		return fmt.Sprintf("CREATE TABLE %s (id integer, v text)", t), t, ""
	}
	t := s.tables[rng.IntN(len(s.tables))]
	if p < 0.7 {
		c := fmt.Sprintf("c_%d", n)
		return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s integer", t, c), t, c
	}
	cols := s.cols[t]
	return fmt.Sprintf("CREATE INDEX i_%d ON %s (%s)", n, t, cols[rng.IntN(len(cols))]), t, ""
}

// ddlOutcome classifies a DDL statement's result.
func ddlOutcome(err error, notices []string) (string, string) {
	if err == nil {
		for _, n := range notices {
			if strings.Contains(n, notRecorded) {
				return outWarned, n
			}
		}
		return outOK, strings.Join(notices, "; ")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Severity == "ERROR" {
		// An ERROR ends an autocommit statement's transaction: nothing
		// committed.
		return outFail, pe.Code + " " + pe.Message
	}
	return outUnknown, err.Error()
}

// ddlClient runs DDL in the workspace through a random node, a few
// statements per session, in the simple or the extended protocol.
func (ls *loadState) ddlClient(ctx context.Context, id int, rng *rand.Rand) {
	r := ls.r
	for ctx.Err() == nil {
		mb := r.c.members[rng.IntN(len(r.c.members))]
		cfg, err := r.connConfig(mb, r.proxyPW, ddlWorkspace+"_workspace", nil)
		if err != nil {
			return
		}
		var nmu sync.Mutex
		var notices []string
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			nmu.Lock()
			notices = append(notices, n.Severity+" "+n.Code+" "+n.Message)
			nmu.Unlock()
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.ConnectConfig(cctx, cfg)
		cancel()
		if err != nil {
			sleepCtx(ctx, jitter(rng, 100*time.Millisecond, 500*time.Millisecond))
			continue
		}
		// The first client keeps its session until an error, so that its
		// node may lose the leader under it; the others reconnect often.
		n := 1 + rng.IntN(8)
		if id == ls.schema.firstDDL {
			n = 1 << 30
		}
		for ; n > 0 && ctx.Err() == nil; n-- {
			stmt, table, col := ls.nextDDL(rng)
			mode := pgx.QueryExecModeSimpleProtocol
			if rng.IntN(2) == 0 {
				mode = pgx.QueryExecModeExec
			}
			nmu.Lock()
			notices = nil
			nmu.Unlock()
			call := r.hist.now()
			// recordVersion may retry for close to a minute.
			qctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			_, err := conn.Exec(qctx, stmt, mode)
			cancel()
			nmu.Lock()
			out, det := ddlOutcome(err, notices)
			nmu.Unlock()
			r.hist.record(Op{Client: id, Kind: opDDL, Node: mb.name, Subject: stmt, Call: call, Return: r.hist.now(), Outcome: out, Detail: det})
			if out == outOK {
				s := ls.schema
				s.mu.Lock()
				if col == "" && strings.HasPrefix(stmt, "CREATE TABLE") {
					s.tables = append(s.tables, table)
					s.cols[table] = []string{"id", "v"}
				} else if col != "" {
					s.cols[table] = append(s.cols[table], col)
				}
				s.mu.Unlock()
			}
			if out == outUnknown || (out == outFail && id == ls.schema.firstDDL) {
				break
			}
			sleepCtx(ctx, jitter(rng, 20*time.Millisecond, 200*time.Millisecond))
		}
		cctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		conn.Close(cctx)
		cancel()
	}
}

// deployClient creates deployments of the latest version to every tenant of
// ddlWorkspace, and up to three more tenants of it.
func (ls *loadState) deployClient(ctx context.Context, id int, rng *rand.Rand) {
	r := ls.r
	for sleepCtx(ctx, jitter(rng, 1*time.Second, 5*time.Second)) {
		mb := r.c.members[rng.IntN(len(r.c.members))]
		call := r.hist.now()
		ls.schema.mu.Lock()
		extra := ls.schema.extra
		ls.schema.mu.Unlock()
		if extra < 3 && rng.IntN(6) == 0 {
			name := fmt.Sprintf("dtx%d", extra)
			code, raw, err := r.c.callTimeout(context.Background(), mb, "POST", "/v1/tenants", r.proxyPW,
				map[string]string{"name": name, "blueprint": ddlWorkspace}, 40*time.Second)
			ls.schema.mu.Lock()
			ls.schema.extra++
			ls.schema.mu.Unlock()
			r.hist.record(Op{Client: id, Kind: opSchemaTenant, Node: mb.name, Subject: name, Call: call, Return: r.hist.now(),
				Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)})
			continue
		}
		code, raw, err := r.c.call(context.Background(), mb, "POST", "/v1/deployments", r.proxyPW,
			map[string]any{"blueprint": ddlWorkspace, "all": true})
		op := Op{Client: id, Kind: opDeploy, Node: mb.name, Subject: ddlWorkspace, Call: call, Return: r.hist.now(),
			Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)}
		var d httpapi.Deployment
		if op.Outcome == outOK && json.Unmarshal(raw, &d) == nil {
			op.Subject, op.Detail = d.ID, fmt.Sprintf("%d version %d", code, d.TargetVersion)
		}
		r.hist.record(op)
	}
}

// deployResults is a deployment's tenant outcomes (none when the answer
// left them out).
func deployResults(d httpapi.Deployment) []httpapi.DeploymentResult {
	if d.Results == nil {
		return nil
	}
	return *d.Results
}

// deployFailures lists a deployment's tenants that did not end done.
func deployFailures(d httpapi.Deployment) string {
	var out []string
	for _, t := range deployResults(d) {
		if t.Status != "done" {
			out = append(out, fmt.Sprintf("%s %s %s", t.TenantID, t.Status, t.Error))
		}
	}
	return strings.Join(out, "; ")
}

// getDeployment reads a deployment from any node that answers.
func (r *runner) getDeployment(ctx context.Context, id string) (httpapi.Deployment, error) {
	var d httpapi.Deployment
	var last error
	for _, mb := range r.c.members {
		code, raw, err := r.c.call(ctx, mb, "GET", "/v1/deployments/"+id, r.proxyPW, nil)
		if err == nil && code == 200 && json.Unmarshal(raw, &d) == nil {
			return d, nil
		}
		last = errors.Newf("%s", detail(code, raw, err))
	}
	return d, last
}

// waitDeployment waits until a deployment is no longer in progress.
func (r *runner) waitDeployment(ctx context.Context, id string, limit time.Duration) (httpapi.Deployment, error) {
	deadline := time.Now().Add(limit)
	for {
		d, err := r.getDeployment(ctx, id)
		if err == nil && d.Status != "in_progress" {
			return d, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.Newf("still %s after %s: %s", d.Status, limit, deployFailures(d))
			}
			return d, err
		}
		if !sleepCtx(ctx, time.Second) {
			return d, ctx.Err()
		}
	}
}

// blueprintVersion is one version as GET /v1/blueprints/{name}/versions
// shows it.
type blueprintVersion struct {
	Version    int      `json:"version"`
	Statements []string `json:"statements"`
}

// ddlObject is the object a statement of the workload makes (t_N, c_N,
// i_N), which no other statement makes.
var ddlObjectRE = regexp.MustCompile(`^(?:CREATE TABLE (t_\d+)|ALTER TABLE t_\d+ ADD COLUMN (c_\d+)|CREATE INDEX (i_\d+))`)

func ddlObject(stmt string) string {
	m := ddlObjectRE.FindStringSubmatch(stmt)
	if m == nil {
		return ""
	}
	return m[1] + m[2] + m[3]
}

// checkSchema is the schema workload's check; it runs after the replicas
// converged.
func (r *runner) checkSchema(ctx context.Context, rep *Report, ops []Op) {
	sr := &SchemaReport{}
	rep.Schema = sr
	violation := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	// Deployments made under faults must finish (done or failed).
	for _, op := range ops {
		if op.Kind != opDeploy || op.Outcome != outOK {
			continue
		}
		sr.Deployments++
		d, err := r.waitDeployment(ctx, op.Subject, 3*time.Minute)
		switch {
		case err != nil:
			violation("deployment %s (made at %s through %s) is stuck: %v", op.Subject, op.Return, op.Node, err)
		case d.Status != "completed":
			sr.DeployFailed = append(sr.DeployFailed, fmt.Sprintf("%s version %d: %s: %s", d.ID, d.TargetVersion, d.Status, deployFailures(d)))
		}
	}
	// DDL that committed and was not recorded (its node killed between the
	// COMMIT and the record, or cut off from the leader for longer than
	// the record waits) is in the workspace's DDL journal, and the next DDL
	// records it first: one more, once nothing else runs there.
	if err := r.lastDDL(ctx); err != nil {
		violation("the last DDL, which records what the workspace's journal holds: %v", err)
	}
	sr.FromJournal, sr.JournalUntold = r.c.journalLines()
	// The final deployment, on a healed cluster, must complete.
	var final httpapi.Deployment
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		mb := r.c.leader(ctx)
		if mb == nil {
			mb = r.c.members[0]
		}
		var code int
		var raw []byte
		code, raw, err = r.c.call(ctx, mb, "POST", "/v1/deployments", r.proxyPW, map[string]any{"blueprint": ddlWorkspace, "all": true})
		if err == nil && code == 202 && json.Unmarshal(raw, &final) == nil {
			err = nil
			break
		}
		err = errors.Newf("%s", detail(code, raw, err))
		sleepCtx(ctx, time.Second)
	}
	if err == nil {
		final, err = r.waitDeployment(ctx, final.ID, 3*time.Minute)
	}
	switch {
	case err != nil:
		violation("the final deployment: %v", err)
		sr.Final = "error: " + err.Error()
	case final.Status != "completed":
		violation("the final deployment %s to version %d %s: %s", final.ID, final.TargetVersion, final.Status, deployFailures(final))
		sr.Final = final.Status
	default:
		sr.Final = fmt.Sprintf("%s: version %d on %d tenants", final.ID, final.TargetVersion, len(deployResults(final)))
	}
	r.say("final deployment: %s", sr.Final)

	// The blueprint.
	var versions []blueprintVersion
	code, raw, err := r.c.call(ctx, r.c.members[0], "GET", "/v1/blueprints/"+ddlWorkspace+"/versions", r.proxyPW, nil)
	if err != nil || code != 200 || json.Unmarshal(raw, &versions) != nil {
		violation("read the blueprint versions: %s", detail(code, raw, err))
		return
	}
	sr.Versions = len(versions)
	where := map[string][]int{} // statement → versions holding it
	for _, v := range versions {
		for _, s := range v.Statements {
			where[s] = append(where[s], v.Version)
		}
	}
	for s, vs := range where {
		if len(vs) > 1 {
			violation("DDL %q is in %d blueprint versions %v", s, len(vs), vs)
		}
	}
	outcome := map[string]string{} // object → outcome of the DDL that makes it
	var acked []Op
	for _, op := range ops {
		if op.Kind != opDDL {
			continue
		}
		outcome[ddlObject(op.Subject)] = op.Outcome
		vs := where[op.Subject]
		switch op.Outcome {
		case outOK:
			sr.DDLAcked++
			acked = append(acked, op)
			if len(vs) == 0 {
				violation("DDL %q acknowledged at %s through %s is in no blueprint version", op.Subject, op.Return, op.Node)
			}
		case outWarned:
			sr.DDLWarned = append(sr.DDLWarned, fmt.Sprintf("%s at %.3fs–%.3fs through %s: %s", op.Subject, op.Call.Seconds(), op.Return.Seconds(), op.Node, op.Detail))
			if len(vs) > 0 {
				sr.WarnedInBP = append(sr.WarnedInBP, fmt.Sprintf("%s in version %v", op.Subject, vs))
			}
		case outUnknown:
			sr.DDLUnknown++
			if len(vs) > 0 {
				sr.UnknownInBP++
			}
		case outFail:
			if len(vs) > 0 {
				violation("DDL %q refused at %s through %s (%s) is in blueprint version %v", op.Subject, op.Return, op.Node, op.Detail, vs)
			}
		}
	}
	// Commit order: a DDL acknowledged before another was sent has the
	// lower version.
	for _, a := range acked {
		for _, b := range acked {
			if a.Return < b.Call && len(where[a.Subject]) > 0 && len(where[b.Subject]) > 0 && where[a.Subject][0] >= where[b.Subject][0] {
				violation("DDL %q (acknowledged at %.3fs, version %d) is not before %q (sent at %.3fs, version %d)",
					a.Subject, a.Return.Seconds(), where[a.Subject][0], b.Subject, b.Call.Seconds(), where[b.Subject][0])
			}
		}
	}

	// The schemas: the blueprint replayed on a fresh database, the
	// workspace's database, and every tenant's.
	bp, err := r.replay(ctx, versions)
	if err != nil {
		violation("replay the blueprint on a fresh database: %v", err)
		return
	}
	wsDB, err := r.workspaceDatabase(ctx)
	if err != nil {
		violation("%v", err)
		return
	}
	wsSchema, err := r.readSchema(ctx, wsDB)
	if err != nil {
		violation("read the workspace's schema: %v", err)
		return
	}
	// A DDL warned about or of unknown outcome that committed was recorded
	// from the journal by the last DDL: no difference is explained by it.
	explain := func(what string, diffs []schemaDiff) {
		for _, d := range diffs {
			if o := outcome[d.object]; o == outWarned || o == outUnknown {
				violation("%s: %s (its DDL: %s, and not recorded from the workspace's journal)", what, d.text, o)
			} else {
				violation("%s: %s", what, d.text)
			}
		}
	}
	explain("workspace vs blueprint", diffSchemas(bp, wsSchema))
	var tenants []struct {
		TenantID         string `json:"tenant_id"`
		Blueprint        string `json:"blueprint"`
		Status           string `json:"status"`
		PhysicalDatabase string `json:"physical_database"`
	}
	code, raw, err = r.c.call(ctx, r.c.members[0], "GET", "/v1/tenants", r.proxyPW, nil)
	if err != nil || code != 200 || json.Unmarshal(raw, &tenants) != nil {
		violation("list tenants: %s", detail(code, raw, err))
		return
	}
	for _, t := range tenants {
		if t.Blueprint != ddlWorkspace || t.Status == "deleting" {
			continue
		}
		ts, err := r.readSchema(ctx, t.PhysicalDatabase)
		if err != nil {
			violation("tenant %s (%s): read its schema: %v", t.TenantID, t.Status, err)
			continue
		}
		sr.Tenants = append(sr.Tenants, t.TenantID+" "+t.Status)
		for _, d := range diffSchemas(bp, ts) {
			violation("tenant %s vs blueprint: %s", t.TenantID, d.text)
		}
		explain("tenant "+t.TenantID+" vs workspace", diffSchemas(wsSchema, ts))
	}
}

// schema is a database's tables (with their columns in order) and indexes
// in schema public.
type schema struct {
	tables  map[string][]string // table → "name type" in column order
	indexes map[string]string   // index → definition
}

type schemaDiff struct {
	object string // the workload's object the difference is about
	text   string
}

// journalLines reads the nodes' logs for the transactions they recorded
// from the workspace's DDL journal, and the lines about DDL it held whose
// statements could not be told.
func (c *cluster) journalLines() (recorded int, untold []string) {
	for _, mb := range c.members {
		b, err := os.ReadFile(mb.logPath)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			switch {
			case strings.Contains(l, "that its session may not have recorded"):
				recorded++
			case strings.Contains(l, "is not recorded as a blueprint version and cannot be"):
				untold = append(untold, l)
			}
		}
	}
	return recorded, untold
}

// workspaceDatabase returns the physical database of ddlWorkspace.
func (r *runner) workspaceDatabase(ctx context.Context) (string, error) {
	var ws struct {
		PhysicalDatabase string `json:"physical_database"`
	}
	code, raw, err := r.c.call(ctx, r.c.members[0], "GET", "/v1/workspaces/"+ddlWorkspace, r.proxyPW, nil)
	if err != nil || code != 200 || json.Unmarshal(raw, &ws) != nil || ws.PhysicalDatabase == "" {
		return "", errors.Newf("read workspace %s: %s", ddlWorkspace, detail(code, raw, err))
	}
	return ws.PhysicalDatabase, nil
}

// lastDDL waits until no other session runs a statement in the
// workspace's database, then runs one more DDL statement there through the
// proxy: the session that runs it first records the DDL the workspace's
// journal holds.
func (r *runner) lastDDL(ctx context.Context) error {
	db, err := r.workspaceDatabase(ctx)
	if err != nil {
		return err
	}
	su, err := r.connectDB(ctx, db)
	if err != nil {
		return err
	}
	defer su.Close(context.Background())
	for deadline := time.Now().Add(time.Minute); ; {
		var busy int
		if err := su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'`).Scan(&busy); err != nil {
			return err
		}
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.Newf("%d sessions still run statements in the workspace's database", busy)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	for attempt := 1; ; attempt++ {
		mb := r.c.leader(ctx)
		if mb == nil {
			mb = r.c.members[0]
		}
		err = func() error {
			cfg, err := r.connConfig(mb, r.proxyPW, ddlWorkspace+"_workspace", nil)
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			conn, err := pgx.ConnectConfig(cctx, cfg)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			// A name of its own each attempt: one whose outcome was lost
			// may have committed.
			_, err = conn.Exec(cctx, fmt.Sprintf("CREATE TABLE chaos_last_%d (id int)", attempt), pgx.QueryExecModeSimpleProtocol)
			return err
		}()
		if err == nil || attempt == 10 {
			return err
		}
		sleepCtx(ctx, time.Second)
	}
}

func (r *runner) connectDB(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(r.c.pgURL)
	if err != nil {
		return nil, err
	}
	if db != "" {
		cfg.Database = db
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// readSchema reads a database's schema directly from the backend.
func (r *runner) readSchema(ctx context.Context, db string) (schema, error) {
	s := schema{tables: map[string][]string{}, indexes: map[string]string{}}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := r.connectDB(cctx, db)
	if err != nil {
		return s, err
	}
	defer conn.Close(cctx)
	rows, err := conn.Query(cctx, `SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY c.relname, a.attnum`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var t, c, typ string
		if err := rows.Scan(&t, &c, &typ); err != nil {
			rows.Close()
			return s, err
		}
		s.tables[t] = append(s.tables[t], c+" "+typ)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	rows, err = conn.Query(cctx, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var i, def string
		if err := rows.Scan(&i, &def); err != nil {
			rows.Close()
			return s, err
		}
		s.indexes[i] = def
	}
	rows.Close()
	return s, rows.Err()
}

// replay runs the versions in order, each in a transaction, on a fresh
// database of the backend, and reads its schema.
func (r *runner) replay(ctx context.Context, versions []blueprintVersion) (schema, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	admin, err := r.connectDB(cctx, "")
	if err != nil {
		return schema{}, err
	}
	const db = "chaos_replay"
	_, err = admin.Exec(cctx, `DROP DATABASE IF EXISTS "`+db+`"`)
	if err == nil {
		_, err = admin.Exec(cctx, `CREATE DATABASE "`+db+`" TEMPLATE template0`)
	}
	admin.Close(cctx)
	if err != nil {
		return schema{}, err
	}
	conn, err := r.connectDB(cctx, db)
	if err != nil {
		return schema{}, err
	}
	for _, v := range versions {
		err := pgx.BeginFunc(cctx, conn, func(tx pgx.Tx) error {
			for _, s := range v.Statements {
				if _, err := tx.Exec(cctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
					return errors.Wrapf(err, "%q", s)
				}
			}
			return nil
		})
		if err != nil {
			conn.Close(cctx)
			return schema{}, errors.Wrapf(err, "version %d", v.Version)
		}
	}
	conn.Close(cctx)
	return r.readSchema(ctx, db)
}

var objectRE = regexp.MustCompile(`\b[tci]_\d+\b`)

// diffSchemas lists how got differs from want: tables, columns and indexes
// missing or extra, and columns in another order.
func diffSchemas(want, got schema) []schemaDiff {
	var out []schemaDiff
	add := func(object, format string, args ...any) {
		out = append(out, schemaDiff{object: object, text: fmt.Sprintf(format, args...)})
	}
	for _, t := range sortedKeys(want.tables) {
		g, ok := got.tables[t]
		if !ok {
			add(t, "table %s missing", t)
			continue
		}
		w := want.tables[t]
		var wc, gc []string // the columns both have, in each one's order
		for _, c := range w {
			if slices.Contains(g, c) {
				wc = append(wc, c)
			} else {
				add(colObject(c), "column %s.%s missing", t, c)
			}
		}
		for _, c := range g {
			if slices.Contains(w, c) {
				gc = append(gc, c)
			} else {
				add(colObject(c), "extra column %s.%s", t, c)
			}
		}
		if !slices.Equal(wc, gc) {
			add(t, "columns of %s in another order: %v, want %v", t, gc, wc)
		}
	}
	for _, t := range sortedKeys(got.tables) {
		if _, ok := want.tables[t]; !ok {
			add(t, "extra table %s", t)
		}
	}
	for _, i := range sortedKeys(want.indexes) {
		if g, ok := got.indexes[i]; !ok {
			add(i, "index %s missing", i)
		} else if g != want.indexes[i] {
			add(i, "index %s is %q, want %q", i, g, want.indexes[i])
		}
	}
	for _, i := range sortedKeys(got.indexes) {
		if _, ok := want.indexes[i]; !ok {
			add(i, "extra index %s", i)
		}
	}
	return out
}

func colObject(c string) string { return objectRE.FindString(c) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// printSchema prints the schema workload's numbers and the DDL it was
// told was not recorded or whose outcome it does not know.
func printSchema(w io.Writer, sr *SchemaReport) {
	fmt.Fprintf(w, "schema: %d DDL acknowledged, %d warned not recorded at the time, %d of unknown outcome (%d recorded); %d recorded from the workspace's journal; %d blueprint versions; %d deployments (%d failed); final deployment %s; %d tenants compared\n",
		sr.DDLAcked, len(sr.DDLWarned), sr.DDLUnknown, sr.UnknownInBP, sr.FromJournal, sr.Versions, sr.Deployments, len(sr.DeployFailed), sr.Final, len(sr.Tenants))
	for _, s := range sr.JournalUntold {
		fmt.Fprintf(w, "journal: %s\n", s)
	}
	for _, s := range sr.DDLWarned {
		fmt.Fprintf(w, "warned: %s\n", s)
	}
	for _, s := range sr.WarnedInBP {
		fmt.Fprintf(w, "warned, yet recorded: %s\n", s)
	}
	for _, s := range sr.DeployFailed {
		fmt.Fprintf(w, "deployment failed: %s\n", s)
	}
}
