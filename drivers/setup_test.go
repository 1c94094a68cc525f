package drivers_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
)

// suite is what every driver shares: the node, its certificate, the
// workspace key (scope workspace [myapp], role write) and a scratch dir.
type suite struct {
	env          *testnode.Env
	cert         string // the node's self-signed certificate, trusted by Node.js programs
	workspaceKey string
	tmp          string
}

// conf is one driver's connection details; programs get it as TDB_* variables.
type conf struct {
	Host, Port, User, Database                          string
	TenantKey, WorkspaceKey, ReadKey, ProjectKey        string
	URL, WorkspaceURL, ReadURL, ProjectURL, JDBCURL     string
	MsgProjectScoped, MsgDDL, MsgReadInsert, CACertFile string
	Rows                                                int
	// For the in-process checks only: the control plane's base URL, the
	// tenant's workspace and the workspace key's URL to its database.
	API, Workspace, WorkspaceDBURL string
}

// prepareTenant creates the driver's tenant with the seed's accounts table,
// a read key scoped to it, and returns the connection details.
func (s *suite) prepareTenant(t *testing.T, tenant string) conf {
	t.Helper()
	e := s.env
	key := e.CreateTenant(t, tenant)
	e.WaitReady(t)
	accountsTable(t, e, tenant)
	readKey := e.CreateKey(t, "read", "tenant", tenant)
	host, port, err := net.SplitHostPort(e.Node.BoundWireAddr())
	if err != nil {
		t.Fatal(err)
	}
	db := fsm.TenantDatabase("myapp", tenant)
	return conf{
		Host: host, Port: port, User: e.ProjectID, Database: db,
		TenantKey: key, WorkspaceKey: s.workspaceKey, ReadKey: readKey, ProjectKey: e.ProxyPassword,
		URL:              e.ConnString(key, db, "require"),
		WorkspaceURL:     e.ConnString(s.workspaceKey, db, "require"),
		ReadURL:          e.ConnString(readKey, db, "require"),
		ProjectURL:       e.ConnString(e.ProxyPassword, db, "require"),
		JDBCURL:          fmt.Sprintf("jdbc:postgresql://%s/%s?sslmode=require", net.JoinHostPort(host, port), url.PathEscape(db)),
		MsgProjectScoped: msgProjectScoped, MsgDDL: msgDDL, MsgReadInsert: msgReadInsert,
		CACertFile: s.cert,
		Rows:       largeRows,
	}
}

// environ is the program's environment: this process's, less libpq's PG*
// variables (they would change what a driver connects to), plus TDB_*.
func (c conf) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "TDB_") && !strings.HasPrefix(kv, "TDB_REQUIRE_ALL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"TDB_HOST="+c.Host, "TDB_PORT="+c.Port, "TDB_USER="+c.User, "TDB_DATABASE="+c.Database,
		"TDB_TENANT_KEY="+c.TenantKey, "TDB_WORKSPACE_KEY="+c.WorkspaceKey,
		"TDB_READ_KEY="+c.ReadKey, "TDB_PROJECT_KEY="+c.ProjectKey,
		"TDB_URL="+c.URL, "TDB_URL_WORKSPACE="+c.WorkspaceURL,
		"TDB_URL_READ="+c.ReadURL, "TDB_URL_PROJECT="+c.ProjectURL, "TDB_JDBC_URL="+c.JDBCURL,
		"TDB_MSG_PROJECT_SCOPED="+c.MsgProjectScoped, "TDB_MSG_DDL="+c.MsgDDL, "TDB_MSG_READ_INSERT="+c.MsgReadInsert,
		"TDB_ROWS="+strconv.Itoa(c.Rows),
		// Node.js verifies certificates for sslmode=require (pg-connection-string
		// treats it as verify-full); trusting the node's self-signed certificate
		// stands in for the public certificate of a real deployment.
		"NODE_EXTRA_CA_CERTS="+c.CACertFile,
		"PYTHONDONTWRITEBYTECODE=1", // no __pycache__ in the work tree
	)
}

// accountsTable creates the seed's accounts table in a tenant's physical
// database as its owner, the way a deployment would (blueprint deployment is
// not built yet), with one row, Bob, for the seed's SELECT examples to print.
func accountsTable(t *testing.T, e *testnode.Env, tenant string) {
	t.Helper()
	db := e.Physical(t, fsm.TenantDatabase("myapp", tenant))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := backend.RunAsOwner(ctx, e.PG.URL(), db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE accounts (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    balance DECIMAL(15,2) DEFAULT 0,
    created_at TIMESTAMP DEFAULT NOW()
)`)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO accounts (name, email, balance) VALUES ('Bob', 'bob@test.com', 2000)`)
		return err
	})
	if err != nil {
		t.Fatalf("create accounts in %s: %v", db, err)
	}
}

// runProgram runs one driver program and records its result: it passes when
// it exits 0 having printed at least one "ok" line.
func runProgram(t *testing.T, r *row, dir string, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "ok "):
			r.passed++
		case strings.HasPrefix(line, "FAIL "):
			r.fails++
		}
	}
	prog := strings.Join(append([]string{name}, args...), " ")
	switch {
	case ctx.Err() != nil:
		r.status = "FAIL (timeout)"
		t.Fatalf("%s timed out after 2m:\n%s", prog, out)
	case err != nil:
		r.status = "FAIL"
		t.Fatalf("%s: %v:\n%s", prog, err, out)
	case r.passed == 0:
		r.status = "FAIL (no checks)"
		t.Fatalf("%s printed no ok line:\n%s", prog, out)
	}
	r.status = "pass"
	t.Logf("%s (in drivers/%s):\n%s", prog, dir, out)
}

// checker runs the in-process (Go) checks with the programs' output format.
type checker struct {
	out            strings.Builder
	passed, failed int
}

// check runs one named check; an error or a panic fails it.
func (ck *checker) check(name string, f func() error) {
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return f()
	}()
	if err != nil {
		ck.failed++
		fmt.Fprintf(&ck.out, "FAIL %s: %v\n", name, err)
		return
	}
	ck.passed++
	fmt.Fprintf(&ck.out, "ok   %s\n", name)
}
