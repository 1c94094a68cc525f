package node_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/fsm"
	"tdb/internal/testnode"
)

const seedAccounts = `CREATE TABLE accounts (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    balance DECIMAL(15,2) DEFAULT 0,
    created_at TIMESTAMP DEFAULT NOW()
)`

type version struct {
	Version    int      `json:"version"`
	DDLCount   int      `json:"ddl_count"`
	Statements []string `json:"statements"`
}

// TestWorkspaceDDLBecomesBlueprint runs over TLS (the goroutine relay) and
// over plain TCP (the event loop, which hands the session to goroutines to
// record the version).
func TestWorkspaceDDLBecomesBlueprint(t *testing.T) {
	t.Parallel()
	for _, sslmode := range []string{"require", "disable"} {
		t.Run(sslmode, func(t *testing.T) {
			t.Parallel()
			testWorkspaceDDLBecomesBlueprint(t, sslmode)
		})
	}
}

func testWorkspaceDDLBecomesBlueprint(t *testing.T, sslmode string) {
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", sslmode))

	// The seed's Build Schema step, as one simple-protocol string.
	_, err := ws.Exec(ctx, seedAccounts+`;
INSERT INTO accounts (name, email, balance) VALUES
  ('Alice', 'alice@test.com', 1000),
  ('Bob', 'bob@test.com', 2000);`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	// Rolled back and failed DDL are not captured.
	tx, _ := ws.Begin(ctx)
	if _, err := tx.Exec(ctx, "CREATE TABLE scratch (id int)"); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	if _, err := ws.Exec(ctx, "CREATE TABLE accounts (id int)"); err == nil {
		t.Fatal("duplicate CREATE TABLE succeeded")
	}
	// Extended protocol DDL is captured too.
	if _, err := ws.Exec(ctx, "CREATE INDEX accounts_name_idx ON accounts (name)"); err != nil {
		t.Fatal(err)
	}
	// Control workspaces take DDL without capture.
	cp := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", sslmode))
	if _, err := cp.Exec(ctx, "CREATE TABLE users (id serial primary key, email text)"); err != nil {
		t.Fatal(err)
	}

	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 2 {
		t.Fatalf("versions = %+v, want 2", versions)
	}
	if versions[0].Version != 1 || versions[0].DDLCount != 1 || versions[0].Statements[0] != seedAccounts {
		t.Fatalf("version 1 = %+v", versions[0])
	}
	if versions[1].Statements[0] != "CREATE INDEX accounts_name_idx ON accounts (name)" {
		t.Fatalf("version 2 = %+v", versions[1])
	}
	var cpVersions []version
	e.MustDo(t, "GET", "/v1/blueprints/controlplane/versions", e.ProxyPassword, "", nil, &cpVersions)
	if len(cpVersions) != 0 {
		t.Fatalf("control workspace captured %+v", cpVersions)
	}

	// A new tenant starts at the latest version, without the workspace's rows.
	key := e.CreateTenant(t, "wayne")
	c := connect(t, e.ConnString(key, "myapp__wayne", sslmode))
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil || n != 0 {
		t.Fatalf("tenant accounts: %d, %v", n, err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO accounts (name, email) VALUES ($1, $2)", "Alice", "alice@test.com"); err != nil {
		t.Fatal(err)
	}
	var idx string
	if err := c.QueryRow(ctx, "SELECT indexname FROM pg_indexes WHERE indexname = 'accounts_name_idx'").Scan(&idx); err != nil {
		t.Fatalf("version 2 not applied to the new tenant: %v", err)
	}
	var tenant struct {
		SchemaVersion int `json:"schema_version"`
	}
	e.MustDo(t, "GET", "/v1/tenants/wayne", key, "", nil, &tenant)
	if tenant.SchemaVersion != 2 {
		t.Fatalf("schema_version = %d", tenant.SchemaVersion)
	}
	if _, err := c.Exec(ctx, "DROP INDEX accounts_name_idx"); err == nil || !strings.Contains(err.Error(), "DDL not allowed") {
		t.Fatalf("DDL on tenant: %v", err)
	}
}

// TestCaptureInCommitOrder: a session's DDL waits while another session of
// the workspace holds a transaction with DDL, until that one's version is
// recorded, so versions come in commit order: here the ALTER, sent while
// the CREATE it needs is uncommitted, is recorded after it (it would have
// failed at once otherwise, or been recorded first on a slower node).
// A statement a driver prepared in an earlier batch (pgx's statement cache,
// JDBC's server-side statements) takes the capture lock where it runs: the
// lock its Parse took went back at the end of that batch.
func TestCaptureLockForPreparedDDL(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
		a := connect(t, conn)
		b := connect(t, conn)
		locks := newCaptureLocks(t, e)
		// PostgreSQL parses utility statements without looking up their
		// tables, so the ALTER prepares before its table exists.
		if _, err := b.Prepare(ctx, "alt", "ALTER TABLE prep1 ADD COLUMN c int"); err != nil {
			t.Fatal(err)
		}
		locks.awaitNone("the prepare batch to give the lock back")
		simple := pgx.QueryExecModeSimpleProtocol
		if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE prep1 (id int)", simple); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := b.Exec(ctx, "alt") // Bind, Execute, Sync
			done <- err
		}()
		locks.awaitWaiter("the prepared ALTER to wait for the capture lock")
		if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("the prepared ALTER: %v", err)
		}
		var versions []version
		e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
		if len(versions) != 2 || versions[0].Statements[0] != "CREATE TABLE prep1 (id int)" ||
			versions[1].Statements[0] != "ALTER TABLE prep1 ADD COLUMN c int" {
			t.Fatalf("versions %+v, want the CREATE then the ALTER", versions)
		}
		locks.awaitNone("no capture lock left")
	})
}

// TestCaptureLockForPipelinedDDL: DDL that a client pipelines behind
// another batch still running, or sends later in an extended-protocol batch
// that begins with something else (pgx's SendBatch, psycopg's pipeline),
// takes the capture lock too: it waits for another session's DDL
// transaction and is recorded after it. Without the lock the ALTERs would
// run at once and fail, their tables not yet committed.
func TestCaptureLockForPipelinedDDL(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
		a := connect(t, conn)
		b := connect(t, conn)
		locks := newCaptureLocks(t, e)
		simple := pgx.QueryExecModeSimpleProtocol
		if _, err := b.Prepare(ctx, "alt3", "ALTER TABLE pipe3 ADD COLUMN c int"); err != nil {
			t.Fatal(err)
		}
		locks.awaitNone("the prepare batch to give the lock back")
		batches := []struct {
			name string
			send func(p *pgconn.Pipeline)
		}{
			{"behind a running batch", func(p *pgconn.Pipeline) {
				p.SendQueryParams("SELECT pg_sleep(0.2)", nil, nil, nil, nil)
				_ = p.Sync()
				p.SendQueryParams("ALTER TABLE pipe1 ADD COLUMN c int", nil, nil, nil, nil)
				_ = p.Sync()
			}},
			{"later in a batch", func(p *pgconn.Pipeline) {
				p.SendQueryParams("SELECT 1", nil, nil, nil, nil)
				p.SendQueryParams("ALTER TABLE pipe2 ADD COLUMN c int", nil, nil, nil, nil)
				_ = p.Sync()
			}},
			{"prepared, later in a batch", func(p *pgconn.Pipeline) {
				p.SendQueryParams("SELECT 1", nil, nil, nil, nil)
				p.SendQueryPrepared("alt3", nil, nil, nil)
				_ = p.Sync()
			}},
		}
		var want []string
		for i, batch := range batches {
			table := fmt.Sprintf("pipe%d", i+1)
			create := "CREATE TABLE " + table + " (id int)"
			if _, err := a.Exec(ctx, "BEGIN; "+create, simple); err != nil {
				t.Fatal(err)
			}
			p := b.PgConn().StartPipeline(ctx)
			batch.send(p)
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			locks.awaitWaiter(batch.name + ": the ALTER to wait for the capture lock")
			if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
				t.Fatal(err)
			}
			for {
				res, err := p.GetResults()
				if err != nil {
					t.Fatalf("%s: %v", batch.name, err)
				}
				if res == nil {
					break
				}
				if r, ok := res.(*pgconn.ResultReader); ok {
					if _, err := r.Close(); err != nil {
						t.Fatalf("%s: %v", batch.name, err)
					}
				}
			}
			if err := p.Close(); err != nil {
				t.Fatalf("%s: %v", batch.name, err)
			}
			want = append(want, create, "ALTER TABLE "+table+" ADD COLUMN c int")
		}
		if got := recordedStatements(t, e); !slices.Equal(got, want) {
			t.Fatalf("versions hold %q, want %q", got, want)
		}
		locks.awaitNone("no capture lock left")
	})
}

// TestCaptureLockForDDLWrittenLaterInABatch: psycopg's pipeline writes each
// statement of a batch as it is queued, with no Flush, and its Sync last,
// so the proxy may read a batch's first statement before the DDL behind
// it. The batch holds that first statement until the rest has come and
// takes the capture lock ahead of it: its ALTER waits for another
// session's DDL transaction and is recorded after it. Without the lock the
// ALTER would run at once and fail, its table not yet committed. In a
// transaction psycopg pipelines its BEGIN, with a Sync, ahead of the rest.
func TestCaptureLockForDDLWrittenLaterInABatch(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
		a := connect(t, conn)
		b := connect(t, conn)
		locks := newCaptureLocks(t, e)
		simple := pgx.QueryExecModeSimpleProtocol
		fe := b.PgConn().Frontend()
		statement := func(sql string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}}
		}
		var want []string
		for i, inTx := range []bool{false, true} {
			table := fmt.Sprintf("written%d", i+1)
			create, alter := "CREATE TABLE "+table+" (id int)", "ALTER TABLE "+table+" ADD COLUMN c int"
			if _, err := a.Exec(ctx, "BEGIN; "+create, simple); err != nil {
				t.Fatal(err)
			}
			batches := 1
			if inTx {
				send(t, fe, append(statement("BEGIN"), &pgproto3.Sync{})...)
				batches += 2
			}
			send(t, fe, statement("SELECT 1")...)
			// Time for the proxy to read the first write on its own, as it
			// does psycopg's: with both in one read the lock was taken
			// before too.
			time.Sleep(100 * time.Millisecond)
			send(t, fe, append(statement(alter), &pgproto3.Sync{})...)
			if inTx {
				send(t, fe, append(statement("COMMIT"), &pgproto3.Sync{})...)
			}
			locks.awaitWaiter(fmt.Sprintf("the ALTER (in a transaction: %v) to wait for the capture lock", inTx))
			if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
				t.Fatal(err)
			}
			for range batches {
				for _, got := range answers(t, fe) {
					if strings.HasPrefix(got, "E ") {
						t.Fatalf("in a transaction: %v: the batch failed with %s", inTx, got)
					}
				}
			}
			want = append(want, create, alter)
		}
		if got := recordedStatements(t, e); !slices.Equal(got, want) {
			t.Fatalf("versions hold %q, want %q", got, want)
		}
		locks.awaitNone("no capture lock left")
		// A client that sends a Flush waits for the answers so far (asyncpg's
		// prepare): the statement is not held for the rest of its batch.
		send(t, fe, append(statement("SELECT 1"), &pgproto3.Flush{})...)
		for done := false; !done; {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			_, done = msg.(*pgproto3.CommandComplete)
		}
		send(t, fe, &pgproto3.Sync{})
		answers(t, fe)
	})
}

// TestCaptureLockForDDLBehindACloseOrDescribe: a batch that begins with a
// Close (a driver dropping a statement it no longer caches) or a Describe,
// its DDL behind, takes the capture lock ahead of it too: the ALTER waits
// for another session's DDL transaction and is recorded after it. When the
// wait fails (lock_timeout), the batch fails with its error and the
// session goes on.
func TestCaptureLockForDDLBehindACloseOrDescribe(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
		a := connect(t, conn)
		b := connect(t, conn)
		locks := newCaptureLocks(t, e)
		simple := pgx.QueryExecModeSimpleProtocol
		fe := b.PgConn().Frontend()
		alter := func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "ALTER TABLE " + table + " ADD COLUMN c int"},
				&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		}
		if _, err := b.Prepare(ctx, "sel", "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		var want []string
		for i, first := range []pgproto3.FrontendMessage{
			&pgproto3.Close{ObjectType: 'S', Name: "evicted"},
			&pgproto3.Describe{ObjectType: 'S', Name: "sel"},
		} {
			table := fmt.Sprintf("behind%d", i+1)
			create := "CREATE TABLE " + table + " (id int)"
			if _, err := a.Exec(ctx, "BEGIN; "+create, simple); err != nil {
				t.Fatal(err)
			}
			send(t, fe, append([]pgproto3.FrontendMessage{first}, alter(table)...)...)
			locks.awaitWaiter(fmt.Sprintf("the ALTER behind a %T to wait for the capture lock", first))
			if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
				t.Fatal(err)
			}
			for _, got := range answers(t, fe) {
				if strings.HasPrefix(got, "E ") {
					t.Fatalf("behind a %T: the batch failed with %s", first, got)
				}
			}
			want = append(want, create, "ALTER TABLE "+table+" ADD COLUMN c int")
		}
		if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE behind3 (id int)", simple); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Exec(ctx, "SET lock_timeout = '300ms'", simple); err != nil {
			t.Fatal(err)
		}
		send(t, fe, append([]pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'S', Name: "evicted"}}, alter("behind3")...)...)
		if got := answers(t, fe); !slices.Equal(got, []string{"E 55P03", "Z I"}) {
			t.Fatalf("the batch whose wait failed got %q", got)
		}
		send(t, fe, &pgproto3.Query{String: "SELECT generate_series(1, 3)"})
		if got := answers(t, fe); !slices.Equal(got, []string{"SELECT 3", "Z I"}) {
			t.Fatalf("the session's next Query after the failed wait got %q", got)
		}
		if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
			t.Fatal(err)
		}
		want = append(want, "CREATE TABLE behind3 (id int)")
		if got := recordedStatements(t, e); !slices.Equal(got, want) {
			t.Fatalf("versions hold %q, want %q", got, want)
		}
		locks.awaitNone("no capture lock left")
	})
}

// recordedStatements returns the statements of myapp's blueprint versions,
// in order.
func recordedStatements(t *testing.T, e *testnode.Env) []string {
	t.Helper()
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	var got []string
	for _, v := range versions {
		got = append(got, v.Statements...)
	}
	return got
}

// A DDL batch whose wait for the capture lock fails is not run: the client
// gets the lock wait's own error (lock_timeout, its cancel), not 25P02, and
// nothing of the batch is created or recorded, in a transaction or not.
func TestCaptureLockWaitFails(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
		a := connect(t, conn)
		b := connect(t, conn)
		simple := pgx.QueryExecModeSimpleProtocol
		if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE lw_a (id int)", simple); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Exec(ctx, "SET lock_timeout = '300ms'", simple); err != nil {
			t.Fatal(err)
		}
		// Outside a transaction, and in one (which the error aborts).
		if pe := pgErr(t, execErr(b, "CREATE TABLE lw_b (id int)", simple)); pe.Code != "55P03" {
			t.Fatalf("autocommit DDL past lock_timeout: %s %s", pe.Code, pe.Message)
		}
		if _, err := b.Exec(ctx, "BEGIN", simple); err != nil {
			t.Fatal(err)
		}
		if pe := pgErr(t, execErr(b, "CREATE TABLE lw_c (id int)")); pe.Code != "55P03" { // extended protocol
			t.Fatalf("DDL in a transaction past lock_timeout: %s %s", pe.Code, pe.Message)
		}
		if pe := pgErr(t, execErr(b, "SELECT 1", simple)); pe.Code != "25P02" {
			t.Fatalf("the transaction after the failed wait: %s %s", pe.Code, pe.Message)
		}
		// A batch that begins with the ROLLBACK runs as PostgreSQL would run
		// it: the lock cannot be taken in the failed transaction.
		if _, err := b.Exec(ctx, "ROLLBACK; SET lock_timeout = 0; CREATE TABLE lw_r (id int)", simple); err != nil {
			t.Fatal(err)
		}
		// A cancel ends the wait at once, while the lock is still held.
		errc := make(chan error, 1)
		go func() { errc <- execErr(b, "CREATE TABLE lw_d (id int)", simple) }()
		locks := newCaptureLocks(t, e)
		locks.awaitWaiter("the DDL to wait for the capture lock")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := b.PgConn().CancelRequest(cctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if pe := pgErr(t, err); pe.Code != "57014" {
				t.Fatalf("cancelled wait: %s %s", pe.Code, pe.Message)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the cancel did not end the wait for the capture lock")
		}
		if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
			t.Fatal(err)
		}
		var versions []version
		e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
		if len(versions) != 2 || versions[0].Statements[0] != "CREATE TABLE lw_r (id int)" ||
			versions[1].Statements[0] != "CREATE TABLE lw_a (id int)" {
			t.Fatalf("versions %+v, want the one after the ROLLBACK, then the first session's", versions)
		}
		var n int
		if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname IN ('lw_a', 'lw_r', 'lw_b', 'lw_c', 'lw_d')").Scan(&n); err != nil || n != 2 {
			t.Fatalf("%d tables of lw_a, lw_r and the failed waits exist (%v), want lw_a and lw_r", n, err)
		}
		// The session goes on, and its DDL is recorded.
		if _, err := b.Exec(ctx, "CREATE TABLE lw_e (id int)", simple); err != nil {
			t.Fatal(err)
		}
	})
}

// A transaction that changed rows next to its DDL gets a WARNING when its
// version is recorded: the data changes are not deployed.
func TestCaptureWarnsOfDataChanges(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	notices := make(chan *pgconn.Notice, 10)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := c.Exec(ctx, "CREATE TABLE wd (id int)", simple); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO wd VALUES (1), (2)", simple); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 0 {
		t.Fatalf("a warning without data changes next to DDL: %+v", <-notices)
	}
	if _, err := c.Exec(ctx, "BEGIN; ALTER TABLE wd ADD COLUMN s text; UPDATE wd SET s = 'a'; ALTER TABLE wd ALTER s SET NOT NULL; COMMIT", simple); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-notices:
		if n.Severity != "WARNING" || !strings.Contains(n.Message, "1 statement of the same transaction changed rows (UPDATE 2)") ||
			!strings.Contains(n.Hint, "SET NOT NULL") {
			t.Fatalf("warning: %s %s %q hint %q", n.Severity, n.Code, n.Message, n.Hint)
		}
	default:
		t.Fatal("no warning for the backfill next to the DDL")
	}
}

// Sequelize creates an ENUM column's type with a DO block that skips an
// existing type. In a tenant workspace that one form of DO is recorded as
// it is (it does the same on each tenant); any other DO stays refused.
func TestCaptureEnumTypeBlock(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	admin := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	simple := pgx.QueryExecModeSimpleProtocol
	const block = `DO 'BEGIN CREATE TYPE "public"."enum_users_role" AS ENUM(''admin'', ''user''); EXCEPTION WHEN duplicate_object THEN null; END';`
	for range 2 { // the second finds the type: a no-op
		if _, err := admin.Exec(ctx, block, simple); err != nil {
			t.Fatal(err)
		}
	}
	for sql, want := range map[string]string{
		`DO 'BEGIN CREATE TYPE e2 AS ENUM (''a''); DROP TABLE x; EXCEPTION WHEN duplicate_object THEN null; END'`: "DO is not allowed in a tenant workspace",
		`DO 'BEGIN CREATE TABLE e3 (id int); EXCEPTION WHEN duplicate_object THEN null; END'`:                     "DO is not allowed in a tenant workspace",
	} {
		_, err := admin.Exec(ctx, sql, simple)
		if pe := pgErr(t, err); pe.Code != "42501" || !strings.Contains(pe.Message, want) {
			t.Fatalf("%s: %s %s", sql, pe.Code, pe.Message)
		}
	}
	reader := connect(t, e.ConnString(e.CreateKey(t, "write", "workspace", "myapp"), "myapp_workspace", "disable"))
	_, err := reader.Exec(ctx, block, simple)
	if pe := pgErr(t, err); pe.Code != "42501" || !strings.Contains(pe.Message, "needs a key with role admin") {
		t.Fatalf("the block with a write key: %s %s", pe.Code, pe.Message)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 2 || versions[0].Statements[0] != strings.TrimSuffix(block, ";") {
		t.Fatalf("versions %+v, want the block twice", versions)
	}
	tenant := connect(t, e.ConnString(e.CreateTenant(t, "enums"), "myapp__enums", "disable"))
	var labels string
	if err := tenant.QueryRow(ctx, `SELECT enum_range(NULL::public.enum_users_role)::text`).Scan(&labels); err != nil || labels != "{admin,user}" {
		t.Fatalf("the type on a new tenant: %q, %v", labels, err)
	}
}

// A client that sends DDL and leaves (Terminate and close) while the DDL
// waits for the capture lock: as with PostgreSQL, the DDL runs once the
// lock comes, and its version is recorded.
func TestCaptureAfterTheClientLeft(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
	a := connect(t, conn)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE hold_a (id int)", simple); err != nil {
		t.Fatal(err)
	}
	leaving := loggedIn(t, conn)
	if _, err := leaving.Write(rawQuery("CREATE TABLE late_b (id int)")); err != nil {
		t.Fatal(err)
	}
	locks := newCaptureLocks(t, e)
	locks.awaitWaiter("the DDL to wait for the capture lock")
	_, _ = leaving.Write([]byte{'X', 0, 0, 0, 4})
	leaving.Close()
	time.Sleep(200 * time.Millisecond)
	if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
		t.Fatal(err)
	}
	var versions []version
	waitFor(t, "the version of the DDL whose client left", func() bool {
		e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
		return len(versions) == 2
	})
	if versions[0].Statements[0] != "CREATE TABLE hold_a (id int)" || versions[1].Statements[0] != "CREATE TABLE late_b (id int)" {
		t.Fatalf("versions %+v", versions)
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'late_b'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("late_b: %d, %v", n, err)
	}
}

func TestCaptureInCommitOrder(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
		a := connect(t, conn)
		b := connect(t, conn)
		simple := pgx.QueryExecModeSimpleProtocol
		for _, sql := range []string{"BEGIN", "CREATE TABLE ord1 (id int)"} {
			if _, err := a.Exec(ctx, sql, simple); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := b.Exec(ctx, "ALTER TABLE ord1 ADD COLUMN c int") // extended protocol
			done <- err
		}()
		// b waits for the capture lock a holds (in this workspace's
		// database: the server is shared with other tests).
		locks := newCaptureLocks(t, e)
		locks.awaitWaiter("the second session to wait for the capture lock")
		if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("the waiting ALTER: %v", err)
		}
		var versions []version
		e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
		if len(versions) != 2 || versions[0].Statements[0] != "CREATE TABLE ord1 (id int)" ||
			versions[1].Statements[0] != "ALTER TABLE ord1 ADD COLUMN c int" {
			t.Fatalf("versions %+v, want the CREATE then the ALTER", versions)
		}
		// A cancel sent while b waits for the lock ends the wait, and the
		// batch (DDL and all) does not run.
		if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE ord2 (id int)", simple); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := b.Exec(ctx, "ALTER TABLE ord2 ADD COLUMN c int; SELECT pg_sleep(60)", simple)
			done <- err
		}()
		locks.awaitWaiter("the second session to wait for the capture lock again")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := b.PgConn().CancelRequest(cctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Exec(ctx, "COMMIT", simple); err != nil {
			t.Fatal(err)
		}
		if pe := pgErr(t, <-done); pe.Code != "57014" {
			t.Fatalf("the cancelled batch: %s %s", pe.Code, pe.Message)
		}
		e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
		if len(versions) != 3 || versions[2].Statements[0] != "CREATE TABLE ord2 (id int)" {
			t.Fatalf("versions %+v, want the cancelled ALTER left out", versions)
		}
		// Both gave the lock back: more DDL runs, from either session.
		for _, c := range []*pgx.Conn{a, b} {
			if _, err := c.Exec(ctx, "CREATE INDEX ON ord1 (id)", simple); err != nil {
				t.Fatal(err)
			}
		}
		// The lock goes back just after the client's ReadyForQuery.
		locks.awaitNone("no capture lock left")
	})
}

// execErr runs sql on c and returns its error.
func execErr(c *pgx.Conn, sql string, args ...any) error {
	_, err := c.Exec(context.Background(), sql, args...)
	return err
}

// captureLocks reads, as a superuser, the advisory locks in myapp's
// workspace database (the server is shared with other tests): the capture
// lock and the sessions waiting for it.
type captureLocks struct {
	t  *testing.T
	su *pgx.Conn
	db string
}

func newCaptureLocks(t *testing.T, e *testnode.Env) *captureLocks {
	return &captureLocks{t: t, su: connect(t, e.PG.URL()), db: e.Physical(t, fsm.WorkspaceDatabase("myapp"))}
}

// count returns how many there are, only those not granted when waiting
// is set; -1 when they cannot be read.
func (l *captureLocks) count(waiting bool) int {
	sql := `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`
	if waiting {
		sql += " AND NOT granted"
	}
	var n int
	if err := l.su.QueryRow(context.Background(), sql, l.db).Scan(&n); err != nil {
		return -1
	}
	return n
}

// awaitWaiter waits until one session waits for the lock.
func (l *captureLocks) awaitWaiter(what string) {
	l.t.Helper()
	waitFor(l.t, what, func() bool { return l.count(true) == 1 })
}

// awaitNone waits until no session holds the lock or waits for it.
func (l *captureLocks) awaitNone(what string) {
	l.t.Helper()
	waitFor(l.t, what, func() bool { return l.count(false) == 0 })
}

// TestCaptureInsideAGuardedBatch: with a row limit, a batch that begins
// with INSERT … RETURNING runs in a transaction the proxy opens and commits
// after counting. DDL pipelined into that batch (psycopg's pipeline mode in
// autocommit) commits with the proxy's COMMIT and is recorded.
func TestCaptureInsideAGuardedBatch(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	e.MustDo(t, "PATCH", "/v1/workspaces/myapp/settings", e.ProxyPassword, "", map[string]any{"max_rows_per_query": 100}, nil)
	c := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := c.Exec(ctx, "CREATE TABLE piped (id int)"); err != nil {
		t.Fatal(err)
	}
	fe := c.PgConn().Frontend()
	send(t, fe,
		&pgproto3.Parse{Query: "INSERT INTO piped VALUES (1) RETURNING id"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "ALTER TABLE piped ADD COLUMN note text"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	if got, want := answers(t, fe), []string{"1", "2", "INSERT 0 1", "1", "2", "ALTER TABLE", "Z I"}; !slices.Equal(got, want) {
		t.Fatalf("the batch got %q, want %q", got, want)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if n := len(versions); n != 2 || len(versions[1].Statements) != 1 || versions[1].Statements[0] != "ALTER TABLE piped ADD COLUMN note text" {
		t.Fatalf("versions %+v", versions)
	}
}

// TestCaptureRefusesDDLWithParameters: psycopg binds parameters on the
// server, so CREATE TABLE … AS SELECT %s arrives as "$1" with a value in
// Bind; recorded, the version would fail on every tenant.
func TestCaptureRefusesDDLWithParameters(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	c := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	_, err := c.Exec(ctx, "CREATE TABLE limits AS SELECT $1::int AS tenant_limit", 5)
	if pe := pgErr(t, err); pe.Code != "0A000" || !strings.Contains(pe.Message, "DDL with bind parameters cannot be recorded") {
		t.Fatalf("DDL with a parameter: %s %q", pe.Code, pe.Message)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE limits AS SELECT 5::int AS tenant_limit"); err != nil {
		t.Fatal(err)
	}
	// In a SQL-standard function body $1 is the function's argument.
	if _, err := c.Exec(ctx, "CREATE FUNCTION inc(int) RETURNS int LANGUAGE sql RETURN $1 + 1"); err != nil {
		t.Fatalf("a SQL-standard function body: %v", err)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 2 || versions[0].Statements[0] != "CREATE TABLE limits AS SELECT 5::int AS tenant_limit" {
		t.Fatalf("versions %+v", versions)
	}
	// A tenant gets it, and the control workspace, which records nothing,
	// takes parameters as PostgreSQL does.
	e.CreateTenant(t, "acme")
	ctl := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	if _, err := ctl.Exec(ctx, "CREATE TABLE limits AS SELECT $1::int AS tenant_limit", 5); err != nil {
		t.Fatalf("the control workspace: %v", err)
	}
}

// TestCaptureAfterASkippedClose: after an error PostgreSQL skips every
// message up to Sync, a Close too. The statement it named still exists, and
// its DDL, executed later, is recorded.
func TestCaptureAfterASkippedClose(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	c := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	fe := c.PgConn().Frontend()
	batch := func(want []string, msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		send(t, fe, append(msgs, &pgproto3.Sync{})...)
		if got := answers(t, fe); !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	batch([]string{"1", "Z I"}, &pgproto3.Parse{Name: "s1", Query: "CREATE TABLE h_close (a int)"})
	batch([]string{"1", "E 22012", "Z I"}, // 1/0 is folded, and fails, at Bind
		&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S', Name: "s1"})
	batch([]string{"2", "n", "CREATE TABLE", "Z I"},
		&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{})
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 1 || versions[0].Statements[0] != "CREATE TABLE h_close (a int)" {
		t.Fatalf("versions %+v", versions)
	}
}

// TestCaptureLockKeptWhileABatchIsUnderway: the capture lock goes back
// after the transaction that took it, but not while the client has sent
// part of its next batch (no Sync yet): the release's answers would come
// between that batch's, and the batch's own answers were lost with them.
func TestCaptureLockKeptWhileABatchIsUnderway(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	c := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	fe := c.PgConn().Frontend()
	send(t, fe,
		&pgproto3.Parse{Query: "CREATE TABLE un_a (id int)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "CREATE TABLE un_b (id int)"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{})
	got := answers(t, fe)
	send(t, fe, &pgproto3.Sync{})
	got = append(got, answers(t, fe)...)
	want := []string{"1", "2", "CREATE TABLE", "Z I", "1", "2", "n", "CREATE TABLE", "Z I"}
	if !slices.Equal(got, want) {
		t.Fatalf("the client got %q, want %q", got, want)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 2 || versions[1].Statements[0] != "CREATE TABLE un_b (id int)" {
		t.Fatalf("versions %+v", versions)
	}
	newCaptureLocks(t, e).awaitNone("the capture lock to go back after the batches")
}

// send writes messages to a raw session in one write.
func send(t *testing.T, fe *pgproto3.Frontend, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
}

// answers reads a raw session's messages up to its next ReadyForQuery and
// names them: "1" ParseComplete, "2" BindComplete, "n" NoData, "s"
// PortalSuspended, the command tag of a CommandComplete, "E <SQLSTATE>" for
// an error, "Z <status>".
func answers(t *testing.T, fe *pgproto3.Frontend) []string {
	t.Helper()
	var got []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ParseComplete:
			got = append(got, "1")
		case *pgproto3.BindComplete:
			got = append(got, "2")
		case *pgproto3.NoData:
			got = append(got, "n")
		case *pgproto3.PortalSuspended:
			got = append(got, "s")
		case *pgproto3.CommandComplete:
			got = append(got, string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			got = append(got, "E "+m.Code)
		case *pgproto3.ReadyForQuery:
			return append(got, "Z "+string(m.TxStatus))
		}
	}
}

// TestCaptureRefusesAQueryInsideABatch: after an error PostgreSQL ignores a
// Query until the batch's Sync and never answers it; where DDL is recorded
// the proxy would wait for that answer, holding the capture lock, so a
// Query inside an unfinished batch ends the session there.
func TestCaptureRefusesAQueryInsideABatch(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	c := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	fe := c.PgConn().Frontend()
	send(t, fe, &pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Query{String: "CREATE TABLE q_mid (id int)"})
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("the session ended without saying why: %v", err)
		}
		if m, ok := msg.(*pgproto3.ErrorResponse); ok && m.Severity == "FATAL" {
			if m.Code != "08P01" || !strings.Contains(m.Message, "send Sync first") {
				t.Fatalf("got %s %s %q", m.Severity, m.Code, m.Message)
			}
			break
		}
	}
	newCaptureLocks(t, e).awaitNone("no capture lock left behind")
}

// TestCaptureLockCancelledAsItIsGranted: a client's cancel that reaches its
// backend just as the capture lock is granted fails the lock's Query with
// 57014, yet PostgreSQL keeps a session-level lock granted that way. The
// proxy gives it back all the same, or every DDL of the workspace would
// wait for that idle session. The waiting backend is stopped (SIGSTOP) so
// that the grant comes before it sees the cancel.
func TestCaptureLockCancelledAsItIsGranted(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	conn := e.ConnString(e.ProxyPassword, "myapp_workspace", "disable")
	a, b := connect(t, conn), connect(t, conn)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := a.Exec(ctx, "BEGIN; CREATE TABLE held (id int)", simple); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "CREATE TABLE waiting (id int)", simple)
		done <- err
	}()
	locks := newCaptureLocks(t, e)
	locks.awaitWaiter("the second session to wait for the capture lock")
	var pid int
	if err := locks.su.QueryRow(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = $1)`, locks.db).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the waiting backend %d: %v", pid, err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resume the waiting backend %d: %v", pid, err)
			}
		}
	}
	t.Cleanup(resume)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.PgConn().CancelRequest(cctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "COMMIT", simple); err != nil { // a gives the lock back: it goes to b
		t.Fatal(err)
	}
	waitFor(t, "the lock to be granted to the stopped backend", func() bool { return locks.count(true) == 0 })
	resume()
	if pe := pgErr(t, <-done); pe.Code != "57014" {
		t.Fatalf("the cancelled batch: %s %s", pe.Code, pe.Message)
	}
	// b holds nothing now: DDL runs from a, then from b.
	for _, c := range []*pgx.Conn{a, b} {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := c.Exec(dctx, "CREATE INDEX ON held (id)", simple)
		cancel()
		if err != nil {
			t.Fatalf("DDL after the cancelled lock: %v", err)
		}
	}
	locks.awaitNone("no capture lock left")
}
