package drivers_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"tdb/internal/testnode"
	"tdb/internal/testpg"
	"tdb/node"
	"tdb/wire"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// The exact texts the programs expect (seed, "Connect to Tenant Databases"
// and "Role Enforcement").
const (
	msgProjectScoped = "credential is project-scoped; direct-tenant connections require a tenant-scoped or workspace-scoped key"
	msgDDL           = "DDL not allowed on tenant databases, use workspace mode"
	msgReadInsert    = "permission denied for table accounts"
	largeRows        = 100000
)

// A driver is one program of checks, run on a tenant of its own so that no
// program sees another's rows. Either goChecks is set, or argv.
type driver struct {
	name   string
	tenant string
	// ready, if set, checks the runtime (reporting what is missing through
	// unavailable), installs or compiles, and returns extra environment for the
	// program, or a reason not to run it that is not a failure.
	ready func(t *testing.T, s *suite, r *row) (env []string, notRun string)
	// prepare, if set, replaces the suite's tenant of myapp with accounts
	// (prepareTenant).
	prepare func(s *suite, t *testing.T, tenant string) conf
	dir     string   // the program's directory, under drivers/
	argv    []string // the program; "{tmp}" in an argument is the suite's scratch dir
	// goChecks runs the checks in this process instead.
	goChecks func(ck *checker, c conf)
}

func drivers() []driver {
	return []driver{
		{name: "psql", tenant: "psql", ready: needPsql, dir: "psql", argv: []string{"bash", "checks.sh"}},
		{name: "go pgx", tenant: "pgx", goChecks: pgxChecks},
		{name: "go database/sql (pgx/stdlib)", tenant: "gosql", goChecks: stdlibChecks},
		{name: "go gorm", tenant: "gorm", prepare: (*suite).prepareGormTenant, goChecks: gormChecks},
		{name: "node-postgres (pg)", tenant: "nodepg", ready: needNode, dir: "node", argv: []string{"node", "pg.js"}},
		{name: "node Sequelize", tenant: "sequelize", ready: needNode, dir: "node", argv: []string{"node", "sequelize.js"}},
		{name: "node Knex", tenant: "knex", ready: needNode, dir: "node", argv: []string{"node", "knex.js"}},
		{name: "node Prisma (@prisma/adapter-pg)", tenant: "prisma", ready: needPrisma, dir: "node", argv: []string{"node", "prisma.js"}},
		{name: "python psycopg 3", tenant: "psycopg", ready: needPython("psycopg"), dir: "python", argv: []string{python, "-u", "psycopg3_checks.py"}},
		{name: "python psycopg2", tenant: "psycopg2", ready: needPython("psycopg2"), dir: "python", argv: []string{python, "-u", "psycopg2_checks.py"}},
		{name: "python asyncpg", tenant: "asyncpg", ready: needPython("asyncpg"), dir: "python", argv: []string{python, "-u", "asyncpg_checks.py"}},
		{name: "python SQLAlchemy", tenant: "sqlalchemy", ready: needPython("sqlalchemy", "psycopg2"), dir: "python", argv: []string{python, "-u", "sqlalchemy_checks.py"}},
		{name: "java pgJDBC", tenant: "jdbc", ready: needJava, dir: "java", argv: []string{"java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			"-cp", "{tmp}/java" + string(os.PathListSeparator) + pgJDBCJar(), "DriverChecks"}},
		{name: "ruby pg", tenant: "rubypg", ready: needRuby, dir: "ruby", argv: []string{"ruby", "checks.rb"}},
	}
}

// TestDrivers runs every driver's program through one node, one after the
// other (the machines have two cores), and ends with a pass/fail table.
func TestDrivers(t *testing.T) {
	start := time.Now()
	var dataDir string
	e := testnode.Start(t, func(c *node.Config) { dataDir = c.DataDir })
	s := &suite{
		env:          e,
		cert:         dataDir + "/tls/" + wire.CertFileName,
		workspaceKey: e.CreateKey(t, "write", "workspace", "myapp"),
		tmp:          t.TempDir(),
	}
	if _, err := os.Stat(s.cert); err != nil {
		t.Fatalf("the node's self-signed certificate: %v", err)
	}

	var rows []*row
	for _, d := range drivers() {
		r := &row{name: d.name}
		began := time.Now()
		started := false
		t.Run(d.name, func(t *testing.T) {
			started = true
			s.runDriver(t, d, r)
		})
		if !started { // not selected by -run
			continue
		}
		r.took = time.Since(began)
		if r.status == "" { // t.Fatal before a status was set
			r.status = "FAIL"
		}
		rows = append(rows, r)
	}
	table := renderTable(rows, time.Since(start))
	t.Log("\n" + table)
	fmt.Print(table)
}

// row is one line of the closing table.
type row struct {
	name          string
	status        string // pass, FAIL…, skip: why, not run: why
	passed, fails int
	took          time.Duration
}

func (s *suite) runDriver(t *testing.T, d driver, r *row) {
	var extra []string
	if d.ready != nil {
		var notRun string
		if extra, notRun = d.ready(t, s, r); notRun != "" {
			r.status = "not run: " + notRun
			t.Logf("%s not run (not a failure, see drivers/README.md): %s", d.name, notRun)
			return
		}
	}
	prepare := (*suite).prepareTenant
	if d.prepare != nil {
		prepare = d.prepare
	}
	c := prepare(s, t, d.tenant)
	if d.goChecks != nil {
		ck := &checker{}
		d.goChecks(ck, c)
		r.passed, r.fails = ck.passed, ck.failed
		r.status = "pass"
		if ck.failed > 0 || ck.passed == 0 {
			r.status = "FAIL"
			t.Fatalf("%s: %d of %d checks failed:\n%s", d.name, ck.failed, ck.failed+ck.passed, ck.out.String())
		}
		t.Logf("%s checks:\n%s", d.name, ck.out.String())
		return
	}
	argv := make([]string, len(d.argv))
	for i, a := range d.argv {
		argv[i] = strings.ReplaceAll(a, "{tmp}", s.tmp)
	}
	runProgram(t, r, d.dir, append(c.environ(), extra...), argv[0], argv[1:]...)
}

func renderTable(rows []*row, total time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "driver compatibility through tdb (sslmode=require), %s total\n", total.Round(time.Second))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DRIVER\tRESULT\tCHECKS\tTIME")
	var pass, fail, other int
	for _, r := range rows {
		checks := "-"
		if r.passed+r.fails > 0 {
			checks = fmt.Sprintf("%d/%d", r.passed, r.passed+r.fails)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.status, checks, r.took.Round(100*time.Millisecond))
		switch {
		case r.status == "pass":
			pass++
		case strings.HasPrefix(r.status, "FAIL"):
			fail++
		default:
			other++
		}
	}
	tw.Flush()
	fmt.Fprintf(&b, "drivers: %d pass, %d fail, %d skipped or not run\n", pass, fail, other)
	return b.String()
}

// unavailable reports a missing runtime or package: a failure under
// TDB_REQUIRE_ALL (CI), a skip otherwise.
func unavailable(t *testing.T, r *row, why string) {
	t.Helper()
	if os.Getenv("TDB_REQUIRE_ALL") != "" {
		r.status = "FAIL (missing: " + why + ")"
		t.Fatalf("%s is not available: %s (TDB_REQUIRE_ALL is set: see drivers/README.md for what to install)", r.name, why)
	}
	r.status = "skip: " + why
	if os.Getenv("TDB_REQUIRE_ALL") == "" {
		t.Skipf("%s is not available: %s (TDB_REQUIRE_ALL unset; with TDB_REQUIRE_ALL=1 this fails; see drivers/README.md)", r.name, why)
	}
}
