package drivers_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testnode"
)

// TestWorkspaceDDLBatches: each driver sends a batch of a SELECT and, behind
// it, DDL on a table that another session of the workspace is creating in a
// transaction still open. The batch must wait for the capture lock (the
// other session commits only once it waits), run its DDL once the table is
// there, and be recorded after the CREATE, in commit order. Without the lock
// the batch's ALTER fails at once, its table unknown.
func TestWorkspaceDDLBatches(t *testing.T) {
	e := testnode.Start(t)
	ctx := context.Background()
	wsURL := e.ConnString(e.ProxyPassword, "myapp_workspace", "require")
	host, port, err := net.SplitHostPort(e.Node.BoundWireAddr())
	if err != nil {
		t.Fatal(err)
	}
	su, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { su.Close(context.Background()) })
	physical := e.Physical(t, fsm.WorkspaceDatabase("myapp"))
	tmp := t.TempDir()
	environ := func(table, mode string) []string {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PG") && (!strings.HasPrefix(kv, "TDB_") || strings.HasPrefix(kv, "TDB_REQUIRE_ALL=")) {
				env = append(env, kv)
			}
		}
		return append(env, "PYTHONDONTWRITEBYTECODE=1", "TDB_URL="+wsURL, "TDB_TABLE="+table, "TDB_MODE="+mode,
			"TDB_JDBC_URL=jdbc:postgresql://"+net.JoinHostPort(host, port)+"/myapp_workspace?sslmode=require",
			"TDB_USER="+e.ProjectID, "TDB_PROJECT_KEY="+e.ProxyPassword)
	}
	type client struct {
		name  string
		ready func(t *testing.T, r *row) // reports a missing runtime (unavailable)
		run   func(table, mode string) (string, error)
	}
	program := func(dir string, argv ...string) func(table, mode string) (string, error) {
		return func(table, mode string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir, cmd.Env, cmd.WaitDelay = dir, environ(table, mode), 5*time.Second
			out, err := cmd.CombinedOutput()
			if err == nil && !strings.Contains(string(out), "ok ") {
				err = errors.New("the program printed no ok line")
			}
			return string(out), err
		}
	}
	pgxBatch := func(execMode pgx.QueryExecMode) func(table, mode string) (string, error) {
		return func(table, mode string) (string, error) {
			cfg, err := pgx.ParseConfig(wsURL)
			if err != nil {
				return "", err
			}
			cfg.DefaultQueryExecMode = execMode
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return "", err
			}
			defer c.Close(ctx)
			b := &pgx.Batch{}
			if mode == "transaction" {
				b.Queue("BEGIN")
			}
			b.Queue("SELECT 1")
			b.Queue("ALTER TABLE " + table + " ADD COLUMN c int")
			b.Queue("CREATE INDEX ON " + table + " (c)")
			if mode == "transaction" {
				b.Queue("COMMIT")
			}
			return "", c.SendBatch(ctx, b).Close()
		}
	}
	clients := []client{
		{"go pgx SendBatch (cache statement)", nil, pgxBatch(pgx.QueryExecModeCacheStatement)},
		{"go pgx SendBatch (exec)", nil, pgxBatch(pgx.QueryExecModeExec)},
		{"go pgx SendBatch (simple protocol)", nil, pgxBatch(pgx.QueryExecModeSimpleProtocol)},
		{"python psycopg 3 pipeline", func(t *testing.T, r *row) { needPython("psycopg")(t, nil, r) },
			program("python", python, "-u", "workspace_batch.py")},
		{"java pgJDBC executeBatch", func(t *testing.T, r *row) { needJavaProgram(t, r, tmp, "WorkspaceBatch.java") },
			program("java", "java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
				"-cp", tmp+string(os.PathListSeparator)+pgJDBCJar(), "WorkspaceBatch")},
	}
	waiters := func() int {
		var n int
		err := su.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = $1)`, physical).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var want []string
	for i, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if c.ready != nil {
				c.ready(t, &row{name: c.name})
			}
			for _, mode := range []string{"autocommit", "transaction"} {
				table := "batch" + string(rune('a'+i)) + mode[:2]
				create := "CREATE TABLE " + table + " (id int)"
				a, err := pgx.Connect(ctx, wsURL)
				if err != nil {
					t.Fatal(err)
				}
				// A failed check leaves no transaction that holds the capture lock.
				t.Cleanup(func() { a.Close(context.Background()) })
				if _, err := a.Exec(ctx, "BEGIN; "+create, pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
				type result struct {
					out string
					err error
				}
				done := make(chan result, 1)
				go func() {
					out, err := c.run(table, mode)
					done <- result{out, err}
				}()
				var res *result
				for deadline := time.Now().Add(time.Minute); waiters() != 1; time.Sleep(50 * time.Millisecond) {
					select {
					case r := <-done:
						res = &r
					default:
					}
					if res != nil || time.Now().After(deadline) {
						break
					}
				}
				if res == nil && waiters() != 1 {
					t.Fatalf("%s: the batch did not wait for the capture lock", mode)
				}
				if res != nil {
					t.Fatalf("%s: the batch ended before the other session committed, not waiting for the capture lock: %v\n%s", mode, res.err, res.out)
				}
				if _, err := a.Exec(ctx, "COMMIT", pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
				r := <-done
				if r.err != nil {
					t.Fatalf("%s: %v\n%s", mode, r.err, r.out)
				}
				want = append(want, create, "ALTER TABLE "+table+" ADD COLUMN c int", "CREATE INDEX ON "+table+" (c)")
			}
		})
	}
	var versions []struct {
		Statements []string `json:"statements"`
	}
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	var got []string
	for _, v := range versions {
		got = append(got, v.Statements...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions hold %q, want %q", got, want)
	}
	if n := waiters(); n != 0 {
		t.Fatalf("%d sessions still wait for the capture lock", n)
	}
}

// needJavaProgram compiles one program of java/ into dir.
func needJavaProgram(t *testing.T, r *row, dir, file string) {
	needBinaries(t, r, "apt-get install default-jdk-headless", "javac", "java")
	jar := pgJDBCJar()
	if _, err := os.Stat(jar); err != nil {
		unavailable(t, r, jar+" not found (apt-get install libpostgresql-jdbc-java)")
	}
	src, _ := filepath.Abs(filepath.Join("java", file))
	if out, err := exec.Command("javac", "-encoding", "UTF-8", "-cp", jar, "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac %s: %v\n%s", file, err, out)
	}
}
