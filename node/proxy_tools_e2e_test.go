package node_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/internal/testnode"
)

// tool returns the path of a PostgreSQL client program, or skips/fails.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TDB_REQUIRE_ALL") == "" {
			t.Skipf("%s not installed, skipping (TDB_REQUIRE_ALL=1 makes this a failure): %v", name, err)
		}
		t.Fatalf("%s not installed (TDB_REQUIRE_ALL is set): %v", name, err)
	}
	return p
}

func TestPgbenchThroughProxy(t *testing.T) {
	t.Parallel()
	pgbench := tool(t, "pgbench")
	e := testnode.Start(t)
	cs := e.ConnString(e.ProxyPassword, "controlplane_workspace", "require")
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, pgbench, append(args, cs)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-i", "-I", "dtGvp", "-s", "1", "-q")
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out := run("-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200")
		if !strings.Contains(out, "number of transactions actually processed: 800/800") {
			t.Fatalf("pgbench -M %s:\n%s", mode, out)
		}
	}
	out := run("-n", "-M", "prepared", "-c", "2", "-t", "100") // the TPC-B-like write mix
	if !strings.Contains(out, "number of failed transactions: 0") {
		t.Fatalf("pgbench tpcb:\n%s", out)
	}
}

func TestPsqlThroughProxy(t *testing.T) {
	t.Parallel()
	psql := tool(t, "psql")
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")

	// channel_binding=require makes libpq insist on SCRAM-SHA-256-PLUS over TLS.
	cs := e.ConnString(key, "myapp__wayne", "require") + "&channel_binding=require"
	out, err := exec.Command(psql, cs, "-XAtqc", "INSERT INTO accounts (name, email) VALUES ('Alice', 'a@x') RETURNING name").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Alice" {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	out, _ = exec.Command(psql, cs, "-XAtc", "CREATE TABLE t (id int)").CombinedOutput()
	if !strings.Contains(string(out), "DDL not allowed on tenant databases, use workspace mode") {
		t.Fatalf("psql DDL: %s", out)
	}

	// psql interrupted with SIGINT sends a CancelRequest with the proxy's key.
	cmd := exec.Command(psql, cs, "-Xc", "SELECT pg_sleep(60)")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("psql still running after SIGINT: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "canceling statement due to user request") {
		t.Fatalf("psql after SIGINT: %s", buf.String())
	}
}

// terminatedSession returns a session whose backend an administrator has
// just terminated.
func terminatedSession(t *testing.T, e *testnode.Env) *pgx.Conn {
	t.Helper()
	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	ctx := context.Background()
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, e.PG.URL())
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBackendGoneGivesFatal(t *testing.T) {
	t.Parallel()
	c := terminatedSession(t, testnode.Start(t))
	ctx := context.Background()
	var one int
	err := c.QueryRow(ctx, "SELECT 1").Scan(&one)
	if err == nil {
		t.Fatal("query on a terminated backend succeeded")
	}
	if !strings.Contains(err.Error(), "terminating connection") && !strings.Contains(err.Error(), "connection to the database backend was lost") {
		t.Fatalf("got %v", err)
	}
}

// TestBackendFatalIsTheOnlyOne: a backend that ends with its own FATAL
// (terminated by an administrator) leaves the client that one error, not a
// second one of the proxy's.
func TestBackendFatalIsTheOnlyOne(t *testing.T) {
	t.Parallel()
	c := terminatedSession(t, testnode.Start(t))
	fe := c.PgConn().Frontend()
	var errs []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			break
		}
		if er, ok := msg.(*pgproto3.ErrorResponse); ok {
			errs = append(errs, er.Severity+" "+er.Code)
		}
	}
	if len(errs) != 1 || errs[0] != "FATAL 57P01" {
		t.Fatalf("errors %v, want the backend's FATAL 57P01 alone", errs)
	}
}

func TestClientGoneCancelsBackendQuery(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	c := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	ctx := context.Background()
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	goExec(t, c, "SELECT pg_sleep(60)")
	time.Sleep(500 * time.Millisecond)
	_ = c.PgConn().Conn().Close() // the client vanishes mid-query

	admin := connect(t, e.PG.URL())
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("backend session still alive 20 s after its client vanished")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
