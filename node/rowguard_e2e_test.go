package node_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/node"
	"tdb/querylog"
)

// TestPolicyMaxRowsKeepsWritesTrue checks that ERROR 54000 means what any
// error means: nothing of the batch is kept. The results here are small, so
// the backend finishes each statement (and would commit it) before the
// proxy's cancel could reach it.
func TestPolicyMaxRowsKeepsWritesTrue(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		ctx := context.Background()
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		const overText = "query returned more than max_rows_per_query (5) rows"
		count := func() int { t.Helper(); return countAccounts(t, c) }
		idle := func() {
			t.Helper()
			if st := c.PgConn().TxStatus(); st != 'I' {
				t.Fatalf("transaction status %q after the batch, want idle", st)
			}
		}
		insertReturning := func(n int) string {
			return fmt.Sprintf(`INSERT INTO accounts (name, email)
				SELECT 'r' || g, 'r' || g || '-' || random() || '@x' FROM generate_series(1, %d) g RETURNING id`, n)
		}
		simple, extended := pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement

		// Past the limit outside a transaction: the rows written are not kept.
		for _, mode := range []pgx.QueryExecMode{simple, extended} {
			_, err := c.Exec(ctx, insertReturning(10), mode)
			wantPgError(t, err, "ERROR", "54000", overText)
			idle()
			if n := count(); n != 0 {
				t.Fatalf("%v: %d rows kept after the 54000 error", mode, n)
			}
		}
		// A simple Query of several statements is one transaction, before
		// or after the statement that passed the limit.
		for _, sql := range []string{
			"SELECT generate_series(1, 10); INSERT INTO accounts (name, email) VALUES ('h', 'h@x')",
			"INSERT INTO accounts (name, email) VALUES ('h', 'h@x'); SELECT generate_series(1, 10)",
			"(SELECT generate_series(1, 10)) UNION ALL (SELECT 0); INSERT INTO accounts (name, email) VALUES ('h', 'h@x')",
		} {
			_, err := c.Exec(ctx, sql, simple)
			wantPgError(t, err, "ERROR", "54000", overText)
			idle()
			if n := count(); n != 0 {
				t.Fatalf("%q: %d rows kept after the 54000 error", sql, n)
			}
		}
		// So is an extended-protocol pipeline, up to its Sync: the write
		// after the statement that passed the limit is not kept either.
		// (pgx prepares both statements, then binds and runs them in one
		// batch that begins with the SELECT.)
		b := &pgx.Batch{}
		b.Queue("SELECT generate_series(1, 10)")
		b.Queue("INSERT INTO accounts (name, email) VALUES ('p', 'p@x')")
		br := c.SendBatch(ctx, b)
		_, err := br.Exec()
		wantPgError(t, err, "ERROR", "54000", overText)
		_ = br.Close()
		idle()
		if n := count(); n != 0 {
			t.Fatalf("pipeline: %d rows kept after the 54000 error", n)
		}
		// A pipeline whose write comes in a later write of the client's,
		// after a Flush: the proxy cannot see it when the batch begins, so
		// the batch runs in its transaction all the same.
		fe := c.PgConn().Frontend()
		send(t, fe, &pgproto3.Parse{Query: "SELECT generate_series(1, 10)"}, &pgproto3.Bind{},
			&pgproto3.Execute{}, &pgproto3.Flush{})
		time.Sleep(100 * time.Millisecond)
		// insertBehind sends the rest of a pipeline that passes the limit,
		// an INSERT and the Sync, and checks nothing of it was kept.
		insertBehind := func(what string, first ...pgproto3.FrontendMessage) {
			t.Helper()
			send(t, fe, append(first, &pgproto3.Parse{Query: "INSERT INTO accounts (name, email) VALUES ('f', 'f@x')"},
				&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})...)
			if got := answers(t, fe); !slices.Contains(got, "E 54000") || got[len(got)-1] != "Z I" {
				t.Fatalf("%s answered %v, want 54000 and an idle session", what, got)
			}
			if n := count(); n != 0 {
				t.Fatalf("%s: %d rows kept after the 54000 error", what, n)
			}
		}
		insertBehind("split pipeline")
		// A query in parentheses returns rows too.
		insertBehind("pipeline of a parenthesised query",
			&pgproto3.Parse{Query: "(SELECT generate_series(1, 10))"}, &pgproto3.Bind{}, &pgproto3.Execute{})
		// A batch that begins with a Close (a driver closing a statement
		// it no longer caches) is read from its first Parse or Bind.
		insertBehind("pipeline after a Close", &pgproto3.Close{ObjectType: 'S', Name: "gone"},
			&pgproto3.Parse{Query: "SELECT generate_series(1, 10)"}, &pgproto3.Bind{}, &pgproto3.Execute{})
		// Sent on its own (and answered), the Close tells nothing of the
		// batch: it runs in the proxy's transaction all the same.
		send(t, fe, &pgproto3.Close{ObjectType: 'S', Name: "gone"}, &pgproto3.Flush{})
		if m, err := fe.Receive(); err != nil {
			t.Fatal(err)
		} else if _, ok := m.(*pgproto3.CloseComplete); !ok {
			t.Fatalf("a Close answered %T", m)
		}
		insertBehind("pipeline after a Close sent alone",
			&pgproto3.Parse{Query: "SELECT generate_series(1, 10)"}, &pgproto3.Bind{}, &pgproto3.Execute{})
		// A batch that commits after statements that write and return
		// rows would keep its writes past the limit (the COMMIT has run by
		// the time the rows are counted): it is refused, simple or
		// extended, whether it passes the limit or not.
		const commitText = "with max_rows_per_query set, a batch that returns rows and writes cannot also commit: send COMMIT on its own"
		for _, sql := range []string{
			"BEGIN; SELECT generate_series(1, 10); INSERT INTO accounts (name, email) VALUES ('c', 'c@x'); COMMIT",
			"BEGIN; INSERT INTO accounts (name, email) VALUES ('c', 'c@x') RETURNING id; COMMIT",
		} {
			_, err := c.Exec(ctx, sql, simple)
			wantPgError(t, err, "ERROR", "0A000", commitText)
			idle()
		}
		for n, code := range map[int]string{3: "0A000", 10: "54000"} { // the first error the client gets
			b = &pgx.Batch{}
			b.Queue("BEGIN")
			b.Queue(fmt.Sprintf("SELECT generate_series(1, %d)", n))
			b.Queue("INSERT INTO accounts (name, email) VALUES ('c', 'c@x')")
			b.Queue("COMMIT")
			err = c.SendBatch(ctx, b).Close()
			if pe := pgErr(t, err); pe.Code != code {
				t.Fatalf("a pipeline that commits, %d rows: %s %s, want %s", n, pe.Code, pe.Message, code)
			}
			if st := c.PgConn().TxStatus(); st != 'E' { // its BEGIN ran, as in PostgreSQL
				t.Fatalf("transaction status %q after a pipeline that failed in its transaction", st)
			}
			if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
		}
		// Without a BEGIN the batch runs in the proxy's transaction; its
		// refused COMMIT leaves the session idle, not in that transaction.
		b = &pgx.Batch{}
		b.Queue("SELECT generate_series(1, 3)")
		b.Queue("INSERT INTO accounts (name, email) VALUES ('c', 'c@x')")
		b.Queue("COMMIT")
		err = c.SendBatch(ctx, b).Close()
		wantPgError(t, err, "ERROR", "0A000", commitText)
		idle()
		mustSelectOne(t, c)
		if n := count(); n != 0 {
			t.Fatalf("batches that commit: %d rows kept", n)
		}
		// In the client's own transaction too; a COMMIT on its own commits.
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "INSERT INTO accounts (name, email) SELECT 'c' || g, 'c' || g || '@x' FROM generate_series(1, 10) g RETURNING id; COMMIT", simple)
		wantPgError(t, err, "ERROR", "0A000", commitText)
		_ = tx.Rollback(ctx)
		if n := count(); n != 0 {
			t.Fatalf("a transaction's Query that commits: %d rows kept", n)
		}
		// A batch pipelined behind another that is still running waits
		// for it, then runs in the proxy's transaction: extended and
		// simple alike.
		insertMany := "INSERT INTO accounts (name, email) SELECT 'q' || g, 'q' || g || '@x' FROM generate_series(1, 10) g RETURNING id"
		send(t, fe, &pgproto3.Parse{Query: "SELECT pg_sleep(0.2)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Parse{Query: insertMany}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, &pgproto3.Query{String: insertMany})
		for i, want := range []string{"Z I", "E 54000", "Z I", "E 54000"} {
			if got := answers(t, fe); !slices.Contains(got, want) || got[len(got)-1] != "Z I" {
				t.Fatalf("pipelined batch %d answered %v, want %s and an idle session", i+1, got, want)
			}
		}
		if n := count(); n != 0 {
			t.Fatalf("pipelined batches: %d rows kept after the 54000 error", n)
		}
		// A client that sends Terminate right behind a guarded batch
		// keeps its rows, as PostgreSQL commits a Query before it reads
		// the next message; alone and pipelined behind another batch.
		insert3 := "INSERT INTO accounts (name, email) SELECT 't' || g, 't' || g || '@x' FROM generate_series(1, 3) g RETURNING id"
		for i, msgs := range [][]pgproto3.FrontendMessage{
			{&pgproto3.Query{String: insert3}, &pgproto3.Terminate{}},
			{&pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, &pgproto3.Query{String: insert3}, &pgproto3.Terminate{}},
		} {
			leaving := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
			send(t, leaving.PgConn().Frontend(), msgs...)
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				n := count()
				if n == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("case %d: %d rows of a batch sent before Terminate, want 3", i, n)
				}
			}
			if _, err := c.Exec(ctx, "DELETE FROM accounts"); err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
		}
		// Under the limit the rows come back and are kept.
		for _, mode := range []pgx.QueryExecMode{simple, extended} {
			rows, _ := c.Query(ctx, insertReturning(3), mode)
			got := 0
			for rows.Next() {
				got++
			}
			if err := rows.Err(); err != nil || got != 3 {
				t.Fatalf("%v: %d rows returned, %v", mode, got, err)
			}
			idle()
		}
		if n := count(); n != 6 {
			t.Fatalf("%d rows kept, want 6", n)
		}
		// A write that returns no rows is not held back, nor a read.
		if _, err := c.Exec(ctx, "INSERT INTO accounts (name, email) SELECT 'w' || g, 'w' || g || '@x' FROM generate_series(1, 10) g"); err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 16 {
			t.Fatalf("%d rows, want 16", n)
		}
		// A DELETE whose RETURNING passes the limit deletes nothing.
		for _, mode := range []pgx.QueryExecMode{simple, extended} {
			_, err := c.Exec(ctx, "DELETE FROM accounts RETURNING id", mode)
			wantPgError(t, err, "ERROR", "54000", overText)
			if n := count(); n != 16 {
				t.Fatalf("%v: %d rows left after the refused DELETE, want 16", mode, n)
			}
		}

		// In the client's own transaction the error aborts it, as a
		// backend error would: later statements fail, COMMIT rolls back.
		for _, mode := range []pgx.QueryExecMode{simple, extended} {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO accounts (name, email) VALUES ('t', 't@x')", mode); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, "SELECT g FROM generate_series(1, 10) g", mode)
			wantPgError(t, err, "ERROR", "54000", overText)
			if st := c.PgConn().TxStatus(); st != 'E' {
				t.Fatalf("%v: transaction status %q after the 54000 error, want E", mode, st)
			}
			_, err = tx.Exec(ctx, "SELECT 1", mode)
			if pe := pgErr(t, err); pe.Code != "25P02" {
				t.Fatalf("%v: after the 54000 error: %s %s, want 25P02", mode, pe.Code, pe.Message)
			}
			if err := tx.Commit(ctx); err != pgx.ErrTxCommitRollback {
				t.Fatalf("%v: COMMIT of the aborted transaction: %v, want it rolled back", mode, err)
			}
			idle()
			if n := count(); n != 16 {
				t.Fatalf("%v: %d rows after the rolled-back transaction, want 16", mode, n)
			}
		}
		mustSelectOne(t, c)
	})
}

// TestPolicyMaxRowsGuardLetsTheClientsTransactionBe: a guarded batch whose
// later statement ends the proxy's transaction (its own ROLLBACK) leaves no
// guard behind: the client's next BEGIN ... ROLLBACK rolls back. And in the
// client's own transaction, statements pipelined behind the one that
// passed the limit get their own answers, in order.
func TestPolicyMaxRowsGuardLetsTheClientsTransactionBe(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	key := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
	setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
	fe := c.PgConn().Frontend()
	// run sends msgs in one write and reads to the n-th ReadyForQuery: the
	// command tags and error codes in order, and the last status.
	run := func(n int, msgs ...pgproto3.FrontendMessage) (got []string, status byte) {
		t.Helper()
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for n > 0 {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := msg.(type) {
			case *pgproto3.CommandComplete:
				got = append(got, strings.Fields(string(m.CommandTag))[0])
			case *pgproto3.ErrorResponse:
				got = append(got, m.Code)
			case *pgproto3.ReadyForQuery:
				got = append(got, "Z"+string(m.TxStatus))
				status = m.TxStatus
				n--
			}
		}
		return got, status
	}
	count := func() int { t.Helper(); return countAccounts(t, c) }

	got, status := run(1,
		&pgproto3.Parse{Query: "INSERT INTO accounts (name, email) VALUES ('g', 'g@x') RETURNING id"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "ROLLBACK"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if status != 'I' {
		t.Fatalf("guarded batch with its own ROLLBACK: %v", got)
	}
	got, _ = run(3, &pgproto3.Query{String: "BEGIN"},
		&pgproto3.Query{String: "INSERT INTO accounts (name, email) VALUES ('r', 'r@x')"},
		&pgproto3.Query{String: "ROLLBACK"})
	if strings.Join(got, " ") != "BEGIN ZT INSERT ZT ROLLBACK ZI" {
		t.Fatalf("the client's own transaction: %v", got)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d rows, want none: the client's ROLLBACK did not roll back", n)
	}

	got, _ = run(4, &pgproto3.Query{String: "BEGIN"},
		&pgproto3.Query{String: "SELECT generate_series(1, 10)"},
		&pgproto3.Query{String: "SELECT 1"},
		&pgproto3.Query{String: "ROLLBACK"})
	if strings.Join(got, " ") != "BEGIN ZT 54000 ZE 25P02 ZE ROLLBACK ZI" {
		t.Fatalf("pipelined behind the limit: %v", got)
	}
	// So nothing pipelined behind the statement that passed the limit
	// commits: the transaction was aborted before it ran, as an error of
	// the backend's would have; extended batches alike, and behind a
	// BEGIN whose answer has not come back yet.
	insert := "INSERT INTO accounts (name, email) VALUES ('q', 'q@x')"
	got, _ = run(4, &pgproto3.Query{String: "BEGIN"},
		&pgproto3.Query{String: "SELECT generate_series(1, 10)"},
		&pgproto3.Query{String: insert},
		&pgproto3.Query{String: "COMMIT"})
	if strings.Join(got, " ") != "BEGIN ZT 54000 ZE 25P02 ZE ROLLBACK ZI" {
		t.Fatalf("a write and COMMIT pipelined behind the limit: %v", got)
	}
	got, _ = run(4, &pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "SELECT generate_series(1, 10)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: insert}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "COMMIT"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if strings.Join(got, " ") != "BEGIN ZT 54000 ZE 25P02 ZE ROLLBACK ZI" {
		t.Fatalf("an extended pipeline behind the limit: %v", got)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d rows kept from pipelines behind the limit", n)
	}
	mustSelectOne(t, c)
}

// countAccounts counts the rows of the accounts table.
func countAccounts(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM accounts").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eachRelay runs f, in parallel, against a node of each relay: the event
// loop and the goroutine relay.
func eachRelay(t *testing.T, f func(t *testing.T, e *testnode.Env)) {
	for _, relay := range []string{"loop", "goroutines"} {
		t.Run(relay, func(t *testing.T) {
			t.Parallel()
			f(t, testnode.Start(t, func(c *node.Config) { c.GoroutineRelay = relay == "goroutines" }))
		})
	}
}

// TestPolicyMaxRowsCommitAfterEarlierWrites: with a row limit, a batch that
// returns rows and commits a transaction that wrote in earlier batches is
// refused too (its COMMIT would keep those writes past a 54000); a guarded
// batch whose own ROLLBACK the backend skipped after an error leaves the
// session idle; and a migration of DDL and writes between BEGIN and
// COMMIT, which returns no rows, is not refused.
func TestPolicyMaxRowsCommitAfterEarlierWrites(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		ctx := context.Background()
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		fe := c.PgConn().Frontend()
		simple := pgx.QueryExecModeSimpleProtocol
		for i, batch := range [][]pgproto3.FrontendMessage{
			{&pgproto3.Query{String: "SELECT generate_series(1, 10); COMMIT"}},
			{&pgproto3.Parse{Query: "SELECT generate_series(1, 10)"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "COMMIT"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		} {
			for _, sql := range []string{"BEGIN", "INSERT INTO accounts (name, email) VALUES ('a', 'a@x')"} {
				if _, err := c.Exec(ctx, sql, simple); err != nil {
					t.Fatal(err)
				}
			}
			send(t, fe, batch...)
			if got := answers(t, fe); got[len(got)-1] != "Z E" {
				t.Fatalf("case %d: answered %q, want the transaction aborted", i, got)
			}
			if _, err := c.Exec(ctx, "ROLLBACK", simple); err != nil {
				t.Fatal(err)
			}
			if n := countAccounts(t, c); n != 0 {
				t.Fatalf("case %d: %d rows kept", i, n)
			}
		}

		send(t, fe, &pgproto3.Parse{Query: "INSERT INTO accounts (name, email) VALUES ('d', 'd@x') RETURNING id / 0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "ROLLBACK"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := answers(t, fe); !slices.Equal(got, []string{"1", "2", "E 22012", "Z I"}) {
			t.Fatalf("a guarded batch whose ROLLBACK was skipped: %q", got)
		}
		mustSelectOne(t, c)

		ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
		for _, sql := range []string{
			"BEGIN; CREATE TABLE rv_a (id int); CREATE INDEX rv_a_i ON rv_a (id); COMMIT",
			"BEGIN; CREATE TABLE rv_b (id int); INSERT INTO rv_b VALUES (1); COMMIT",
			"BEGIN; LOCK TABLE rv_a IN EXCLUSIVE MODE; INSERT INTO rv_a VALUES (1); COMMIT",
		} {
			if _, err := ws.Exec(ctx, sql, simple); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	})
}

// TestPolicyMaxRowsFunctionWrites: a SELECT that calls a function that
// writes may write and return rows, so with a row limit it is guarded like
// an INSERT … RETURNING (54000 keeps nothing), and what it wrote counts for
// a later batch that returns rows and commits.
func TestPolicyMaxRowsFunctionWrites(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		ctx := context.Background()
		asWayneOwner(t, e, `CREATE FUNCTION add_account(i int) RETURNS int LANGUAGE sql AS $$
			INSERT INTO accounts (name, email) VALUES ('f' || i, 'f' || i || '@x') RETURNING id $$`)
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		const overText = "query returned more than max_rows_per_query (5) rows"
		simple, extended := pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement
		for _, mode := range []pgx.QueryExecMode{simple, extended} {
			for _, sql := range []string{
				"SELECT add_account(g) FROM generate_series(1, 10) g",
				"SELECT * FROM generate_series(1, 10) g, LATERAL add_account(g)",
				"WITH a AS (SELECT add_account(g) FROM generate_series(1, 10) g) SELECT * FROM a",
			} {
				_, err := c.Exec(ctx, sql, mode)
				wantPgError(t, err, "ERROR", "54000", overText)
				if st := c.PgConn().TxStatus(); st != 'I' {
					t.Fatalf("transaction status %q after the batch, want idle", st)
				}
				if n := countAccounts(t, c); n != 0 {
					t.Fatalf("%v %q: %d rows kept after the 54000 error", mode, sql, n)
				}
			}
		}
		// Within the limit what the function wrote is kept.
		if _, err := c.Exec(ctx, "SELECT add_account(g) FROM generate_series(1, 3) g", extended); err != nil {
			t.Fatal(err)
		}
		if n := countAccounts(t, c); n != 3 {
			t.Fatalf("%d rows kept, want 3", n)
		}
		// A transaction whose SELECT wrote through the function cannot be
		// committed by a batch that returns rows.
		for _, sql := range []string{"BEGIN", "SELECT add_account(4)"} {
			if _, err := c.Exec(ctx, sql, simple); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Exec(ctx, "SELECT generate_series(1, 10); COMMIT", simple)
		wantPgError(t, err, "ERROR", "0A000",
			"with max_rows_per_query set, a batch that returns rows and writes cannot also commit: send COMMIT on its own")
		if _, err := c.Exec(ctx, "ROLLBACK", simple); err != nil {
			t.Fatal(err)
		}
		if n := countAccounts(t, c); n != 3 {
			t.Fatalf("%d rows kept, want 3", n)
		}
		// So in a portal suspended after its first row (a driver fetching
		// with a fetch size).
		fe := c.PgConn().Frontend()
		if _, err := c.Exec(ctx, "BEGIN", simple); err != nil {
			t.Fatal(err)
		}
		send(t, fe, &pgproto3.Parse{Query: "SELECT add_account(g) FROM generate_series(5, 7) g"}, &pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
		if got := answers(t, fe); got[len(got)-1] != "Z T" {
			t.Fatalf("suspended portal: %q", got)
		}
		send(t, fe, &pgproto3.Query{String: "SELECT generate_series(1, 10); COMMIT"})
		if got := answers(t, fe); !slices.Contains(got, "E 0A000") {
			t.Fatalf("SELECT; COMMIT after a suspended portal that wrote: %q, want 0A000", got)
		}
		if _, err := c.Exec(ctx, "ROLLBACK", simple); err != nil {
			t.Fatal(err)
		}
		if n := countAccounts(t, c); n != 3 {
			t.Fatalf("%d rows kept, want 3", n)
		}
		// A transaction that only read, through a cursor, commits with a
		// read in one Query.
		for _, sql := range []string{"BEGIN", "DECLARE cur CURSOR FOR SELECT * FROM accounts", "FETCH 2 FROM cur",
			"SELECT 1; COMMIT"} {
			if _, err := c.Exec(ctx, sql, simple); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	})
}

// TestPolicyMaxRowsClientLeavesWhileWaiting: a batch the row guard holds
// behind the client's statements in flight does not stop the proxy from
// noticing that the client left; the statement it still runs is cancelled
// then, not when it ends.
func TestPolicyMaxRowsClientLeavesWhileWaiting(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		ctx := context.Background()
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		running := runningInWayne(t, e)
		const sleep = "SELECT pg_sleep(60) /* left */"
		insert := &pgproto3.Query{String: "INSERT INTO accounts (name, email) VALUES ('w', 'w@x') RETURNING id"}

		// Left without a word: the sleep ahead of the waiting INSERT is cancelled.
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		send(t, c.PgConn().Frontend(), &pgproto3.Query{String: sleep}, insert)
		waitFor(t, "the sleep to start", func() bool { return running(sleep) })
		c.PgConn().Conn().Close()
		waitFor(t, "the sleep to be cancelled", func() bool { return !running(sleep) })

		// So in a transaction, with an extended-protocol batch waiting
		// behind a statement that may return rows.
		c = connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		const sleepTx = "SELECT pg_sleep(60) /* left in a transaction */"
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		send(t, c.PgConn().Frontend(), &pgproto3.Query{String: sleepTx},
			&pgproto3.Parse{Query: "INSERT INTO accounts (name, email) VALUES ('x', 'x@x')"}, &pgproto3.Bind{},
			&pgproto3.Execute{}, &pgproto3.Sync{})
		waitFor(t, "the sleep to start", func() bool { return running(sleepTx) })
		c.PgConn().Conn().Close()
		waitFor(t, "the sleep to be cancelled", func() bool { return !running(sleepTx) })
		if n := countAccounts(t, connect(t, e.ConnString(key, "myapp__wayne", "disable"))); n != 0 {
			t.Fatalf("%d rows kept", n)
		}
	})
}

// TestPolicyMaxRowsClientLeavesDuringTheProxysCommit: a client that leaves
// while the proxy commits its guarded batch does not have that COMMIT
// cancelled: PostgreSQL commits an implicit transaction whether or not its
// client stays.
func TestPolicyMaxRowsClientLeavesDuringTheProxysCommit(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		asWayneOwner(t, e, `CREATE FUNCTION slow_check() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
			CREATE CONSTRAINT TRIGGER slow_check AFTER INSERT ON accounts
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_check()`)
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		running := runningInWayne(t, e)
		committing := func() bool { return running("COMMIT") }
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		send(t, c.PgConn().Frontend(), &pgproto3.Query{String: "INSERT INTO accounts (name, email) VALUES ('c', 'c@x') RETURNING id"})
		waitFor(t, "the proxy's COMMIT", committing)
		c.PgConn().Conn().Close()
		check := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		waitFor(t, "the COMMIT to end", func() bool { return !committing() })
		if n := countAccounts(t, check); n != 1 {
			t.Fatalf("%d rows kept, want the committed 1", n)
		}
	})
}

// asWayneOwner runs sql in tenant wayne's database as its owner.
func asWayneOwner(t *testing.T, e *testnode.Env, sql string) {
	t.Helper()
	ctx := context.Background()
	db := e.Physical(t, fsm.TenantDatabase("myapp", "wayne"))
	if err := backend.RunAsOwner(ctx, e.PG.URL(), db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// runningInWayne returns a function that reports whether tenant wayne's
// database runs the statement sql now (seen by the superuser).
func runningInWayne(t *testing.T, e *testnode.Env) func(sql string) bool {
	ctx := context.Background()
	pg, err := pgx.Connect(ctx, e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(ctx) })
	db := e.Physical(t, fsm.TenantDatabase("myapp", "wayne"))
	return func(sql string) bool {
		t.Helper()
		var n int
		if err := pg.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND datname = $2",
			sql, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
}

// TestPolicyMaxRowsOwnFunctionNames: the functions a blueprint defines are
// known by name, so a write through one called in attribute notation
// (s.bump is bump(s)) or under a built-in's name (an overload of length)
// is guarded too: 54000 keeps nothing, in the workspace and its tenants.
func TestPolicyMaxRowsOwnFunctionNames(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
		for _, ddl := range []string{
			"CREATE TABLE seed (id int)",
			"CREATE TABLE log (id int)",
			"CREATE FUNCTION bump(seed) RETURNS int LANGUAGE sql AS $$ INSERT INTO log VALUES ($1.id) RETURNING 1 $$",
			"CREATE FUNCTION length(seed) RETURNS int LANGUAGE sql AS $$ INSERT INTO log VALUES ($1.id) RETURNING 1 $$",
		} {
			if _, err := ws.Exec(ctx, ddl); err != nil {
				t.Fatalf("%s: %v", ddl, err)
			}
		}
		key := e.CreateTenant(t, "wayne")
		tenant := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		for _, c := range []*pgx.Conn{ws, tenant} {
			if _, err := c.Exec(ctx, "INSERT INTO seed SELECT g FROM generate_series(1, 10) g"); err != nil {
				t.Fatal(err)
			}
		}
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		logged := func(c *pgx.Conn) int {
			t.Helper()
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM log").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for name, c := range map[string]*pgx.Conn{"workspace": ws, "tenant": tenant} {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
				for _, sql := range []string{
					"SELECT s.bump FROM seed s",
					"SELECT (s).bump FROM seed s",
					"SELECT length(s) FROM seed s",
				} {
					_, err := c.Exec(ctx, sql, mode)
					wantPgError(t, err, "ERROR", "54000", "query returned more than max_rows_per_query (5) rows")
					if n := logged(c); n != 0 {
						t.Fatalf("%s, %v %q: %d rows kept after the 54000 error", name, mode, sql, n)
					}
				}
			}
			// Within the limit what the function wrote is kept.
			if _, err := c.Exec(ctx, "SELECT s.bump FROM seed s WHERE s.id <= 3"); err != nil {
				t.Fatal(err)
			}
			if n := logged(c); n != 3 {
				t.Fatalf("%s: %d rows kept, want 3", name, n)
			}
		}
	})
}

// TestPolicyMaxRowsKeepsWritesOfAClientThatClosed: a client pipelines a
// batch, a guarded batch and Terminate, then closes its socket without
// reading. PostgreSQL commits the second batch before it reads the
// Terminate (shown first, straight on the backend); through the proxy the
// rows must be kept too.
func TestPolicyMaxRowsKeepsWritesOfAClientThatClosed(t *testing.T) {
	t.Parallel()
	insert3 := "INSERT INTO accounts (name, email) SELECT 't' || g, 't' || g || '-' || random() || '@x' FROM generate_series(1, 3) g RETURNING id"
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, &pgproto3.Query{String: insert3}, &pgproto3.Terminate{},
	}
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		ctx := context.Background()
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		count := func() int { t.Helper(); return countAccounts(t, c) }
		waitRows := func(what string, want int) {
			t.Helper()
			n := 0
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if n = count(); n == want {
					return
				}
			}
			t.Errorf("%s: %d rows, want %d", what, n, want)
		}
		// Straight on PostgreSQL.
		cfg, err := pgx.ParseConfig(e.PG.URL())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Database = e.Physical(t, fsm.TenantDatabase("myapp", "wayne"))
		direct, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		send(t, direct.PgConn().Frontend(), msgs...)
		direct.PgConn().Conn().Close()
		waitRows("PostgreSQL", 3)
		if _, err := c.Exec(ctx, "DELETE FROM accounts"); err != nil {
			t.Fatal(err)
		}

		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		for i := 0; i < 3; i++ {
			leaving := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
			send(t, leaving.PgConn().Frontend(), msgs...)
			leaving.PgConn().Conn().Close() // gone without reading
			waitRows("through the proxy", 3)
			if _, err := c.Exec(ctx, "DELETE FROM accounts"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestPolicyMaxRowsStatementNameStillHeld: a Parse the backend refuses or
// skips leaves the statement it already holds under that name in place
// (42P05 "prepared statement already exists", or any message after an
// error in its batch). The proxy must go on reading that name as the
// statement that runs, not as the text of the Parse that failed: a
// statement that writes and returns rows, bound later, is guarded, and
// its writes are not kept past the limit.
func TestPolicyMaxRowsStatementNameStillHeld(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		fe := c.PgConn().Frontend()
		const ins = `INSERT INTO accounts (name, email)
			SELECT 'r' || g, 'r' || g || '-' || random() || '@x' FROM generate_series(1, 10) g RETURNING id`
		for i, refused := range [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Name: "ins0", Query: "SELECT 1"}},                                                 // 42P05
			{&pgproto3.Parse{Name: "bad", Query: "SELEC 1"}, &pgproto3.Parse{Name: "ins1", Query: "SELECT 1"}}, // skipped
		} {
			name := fmt.Sprintf("ins%d", i)
			send(t, fe, &pgproto3.Parse{Name: name, Query: ins}, &pgproto3.Sync{})
			if got := answers(t, fe); !slices.Equal(got, []string{"1", "Z I"}) {
				t.Fatalf("Parse %s answered %v", name, got)
			}
			send(t, fe, append(refused, &pgproto3.Sync{})...)
			if got := answers(t, fe); len(got) != 2 || !strings.HasPrefix(got[0], "E ") {
				t.Fatalf("the refused Parse of %s answered %v, want an error", name, got)
			}
			send(t, fe, &pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{}, &pgproto3.Sync{})
			if got := answers(t, fe); !slices.Contains(got, "E 54000") || got[len(got)-1] != "Z I" {
				t.Fatalf("%s answered %v, want 54000 and an idle session", name, got)
			}
			if n := countAccounts(t, c); n != 0 {
				t.Fatalf("%s: %d rows kept after the 54000 error", name, n)
			}
		}
		// The query log names the statement that ran, not the refused text.
		var out struct {
			Entries []querylog.Entry `json:"entries"`
		}
		e.MustDo(t, "GET", "/v1/logs?since=1h", key, "", nil, &out)
		n := 0
		for _, en := range out.Entries {
			if en.SQLState == "54000" {
				n++
				if en.Statement != ins {
					t.Errorf("the 54000 entry names %q, want the INSERT", en.Statement)
				}
			}
		}
		if n != 2 {
			t.Errorf("%d entries of 54000 in the log, want 2: %+v", n, out.Entries)
		}
	})
}

// TestPolicyMaxRowsExecuteOfAPreparedWrite: a statement prepared in SQL
// (PREPARE) and run with EXECUTE, or bound by its name in the extended
// protocol, may write and return rows like any INSERT … RETURNING: past
// the row limit none of its rows are kept.
func TestPolicyMaxRowsExecuteOfAPreparedWrite(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		key := e.CreateTenant(t, "wayne")
		accountsTable(t, e, "wayne")
		ctx := context.Background()
		c := connect(t, e.ConnString(key, "myapp__wayne", "disable"))
		setWorkspace(t, e, map[string]int64{"max_rows_per_query": 5})
		if _, err := c.Exec(ctx, `PREPARE ins AS INSERT INTO accounts (name, email)
			SELECT 'r' || g, 'r' || g || '-' || random() || '@x' FROM generate_series(1, 10) g RETURNING id`, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		_, err := c.Exec(ctx, "EXECUTE ins", pgx.QueryExecModeSimpleProtocol)
		wantPgError(t, err, "ERROR", "54000", "query returned more than max_rows_per_query (5) rows")
		if n := countAccounts(t, c); n != 0 {
			t.Fatalf("EXECUTE: %d rows kept after the 54000 error", n)
		}
		fe := c.PgConn().Frontend()
		send(t, fe, &pgproto3.Bind{PreparedStatement: "ins"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := answers(t, fe); !slices.Contains(got, "E 54000") || got[len(got)-1] != "Z I" {
			t.Fatalf("Bind of ins answered %v, want 54000 and an idle session", got)
		}
		if n := countAccounts(t, c); n != 0 {
			t.Fatalf("Bind of ins: %d rows kept after the 54000 error", n)
		}
	})
}
