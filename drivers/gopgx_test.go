package drivers_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// seedPgx is the seed's pgx example ("Drivers", Go), word for word but for
// printing to w and returning errors instead of panicking.
func seedPgx(w io.Writer, url string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	rows, _ := conn.Query(ctx, "SELECT id, name, balance FROM accounts")
	for rows.Next() {
		var id int
		var name string
		var balance float64
		rows.Scan(&id, &name, &balance)
		fmt.Fprintf(w, "%d: %s ($%.2f)\n", id, name, balance)
	}
	return rows.Err()
}

// pgxChecks runs the suite's checks with pgx (v5).
func pgxChecks(ck *checker, c conf) {
	bg := context.Background()
	ck.check("seed example (pgx.Connect, SELECT id, name, balance FROM accounts)", func() error {
		var out bytes.Buffer
		if err := seedPgx(&out, c.URL); err != nil {
			return err
		}
		if !strings.Contains(out.String(), ": Bob ($2000.00)") {
			return fmt.Errorf("printed %q, want Bob ($2000.00)", out.String())
		}
		return nil
	})

	conn, err := pgxConnect(c.URL)
	if err != nil {
		ck.check("connect with the tenant key", func() error { return err })
		return
	}
	defer conn.Close(bg)
	ck.check("tenant key: a TLS session as the tenant's admin role", func() error {
		if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
			return fmt.Errorf("connection is %T, not TLS", conn.PgConn().Conn())
		}
		var user string
		if err := conn.QueryRow(bg, "SELECT current_user").Scan(&user); err != nil {
			return err
		}
		if !strings.HasSuffix(user, "_admin") {
			return fmt.Errorf("current_user %s", user)
		}
		return nil
	})
	ck.check("server-side prepared statement reused 200 times (Prepare + Exec)", func() error {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		if _, err := conn.Prepare(ctx, "ins", "INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3)"); err != nil {
			return err
		}
		for i := 0; i < 200; i++ {
			if _, err := conn.Exec(ctx, "ins", fmt.Sprintf("p%d", i), fmt.Sprintf("p%d@test.com", i), i); err != nil {
				return fmt.Errorf("exec %d: %w", i, err)
			}
		}
		return nil
	})
	ck.check("parameterised query (statement cache) 200 times", func() error {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		for i := 0; i < 200; i++ {
			var balance float64
			if err := conn.QueryRow(ctx, "SELECT balance FROM accounts WHERE email = $1", fmt.Sprintf("p%d@test.com", i)).Scan(&balance); err != nil {
				return fmt.Errorf("query %d: %w", i, err)
			}
			if balance != float64(i) {
				return fmt.Errorf("p%d balance %v", i, balance)
			}
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil {
			return err
		}
		if n < 2 {
			return fmt.Errorf("pg_prepared_statements has %d statements, want the named and the cached one", n)
		}
		return nil
	})
	ck.check("transaction rolled back leaves nothing", func() error {
		return rollbackLeavesNothing(bg, conn)
	})
	ck.check(fmt.Sprintf("large result streamed row by row (%d rows)", c.Rows), func() error {
		ctx, cancel := context.WithTimeout(bg, 60*time.Second)
		defer cancel()
		rows, err := conn.Query(ctx, "SELECT i, repeat('x', 20) FROM generate_series(1, $1::int) i", c.Rows)
		if err != nil {
			return err
		}
		defer rows.Close()
		return checkSeries(rows, int64(c.Rows))
	})
	ck.check("large result through a cursor (DECLARE, FETCH 5000)", func() error {
		ctx, cancel := context.WithTimeout(bg, 60*time.Second)
		defer cancel()
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, fmt.Sprintf("DECLARE big NO SCROLL CURSOR FOR SELECT i FROM generate_series(1, %d) i", c.Rows)); err != nil {
			return err
		}
		total := 0
		for {
			rows, err := tx.Query(ctx, "FETCH 5000 FROM big")
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n == 0 {
				break
			}
			total += n
		}
		if total != c.Rows {
			return fmt.Errorf("fetched %d rows", total)
		}
		return tx.Commit(ctx)
	})
	ck.check("DDL refused on a tenant: "+c.MsgDDL, func() error {
		_, err := conn.Exec(bg, "CREATE TABLE evil (id int)")
		if err := wantPgError(err, "ERROR", "42501", c.MsgDDL); err != nil {
			return err
		}
		return stillUsable(bg, conn)
	})
	ck.check("statement_timeout cancels pg_sleep (57014)", func() error {
		ctx, cancel := context.WithTimeout(bg, 20*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SET statement_timeout = '300ms'"); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		if err := wantPgError(err, "ERROR", "57014", "canceling statement due to statement timeout"); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "RESET statement_timeout"); err != nil {
			return err
		}
		return stillUsable(ctx, conn)
	})
	ck.check("cancel request (context deadline) stops pg_sleep on the backend", func() error {
		victim, err := pgxConnect(c.URL)
		if err != nil {
			return err
		}
		defer victim.Close(bg)
		ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = victim.Exec(ctx, "SELECT pg_sleep(30) /* pgx-cancel */")
		if err == nil {
			return errors.New("pg_sleep(30) returned without error")
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("cancel took %s", time.Since(start))
		}
		return noBackendRunning(bg, conn, "pgx-cancel")
	})
	ck.check("explicit CancelRequest gets 57014", func() error {
		victim, err := pgxConnect(c.URL)
		if err != nil {
			return err
		}
		defer victim.Close(bg)
		go func() {
			time.Sleep(300 * time.Millisecond)
			ctx, cancel := context.WithTimeout(bg, 5*time.Second)
			defer cancel()
			_ = victim.PgConn().CancelRequest(ctx)
		}()
		ctx, cancel := context.WithTimeout(bg, 20*time.Second)
		defer cancel()
		_, err = victim.Exec(ctx, "SELECT pg_sleep(30)")
		return wantPgError(err, "ERROR", "57014", "canceling statement due to user request")
	})
	commonKeyChecks(ck, c, "pgx")
	ck.check("pgxpool: pool_max_conn_lifetime=1500s, concurrent queries, a dead idle connection replaced", func() error {
		return poolChecks(bg, c)
	})
}

func pgxConnect(url string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return pgx.Connect(ctx, url)
}

// commonKeyChecks checks the workspace, read and project keys with pgx
// connections (shared by the pgx and database/sql drivers, whose connections
// are pgx's).
func commonKeyChecks(ck *checker, c conf, label string) {
	bg := context.Background()
	ck.check("workspace key (scope workspace [myapp], role write) on a tenant of myapp: SELECT and INSERT", func() error {
		conn, err := pgxConnect(c.WorkspaceURL)
		if err != nil {
			return err
		}
		defer conn.Close(bg)
		var user string
		if err := conn.QueryRow(bg, "SELECT current_user").Scan(&user); err != nil {
			return err
		}
		if !strings.HasSuffix(user, "_write") {
			return fmt.Errorf("current_user %s, want the write role", user)
		}
		_, err = conn.Exec(bg, "INSERT INTO accounts (name, email) VALUES ($1, $2)", "ws", label+"-ws@test.com")
		return err
	})
	ck.check("read key: SELECT works, INSERT fails 42501 "+c.MsgReadInsert, func() error {
		conn, err := pgxConnect(c.ReadURL)
		if err != nil {
			return err
		}
		defer conn.Close(bg)
		var n int
		if err := conn.QueryRow(bg, "SELECT count(*) FROM accounts").Scan(&n); err != nil {
			return err
		}
		_, err = conn.Exec(bg, "INSERT INTO accounts (name, email) VALUES ($1, $2)", "r", label+"-r@test.com")
		if err := wantPgError(err, "ERROR", "42501", c.MsgReadInsert); err != nil {
			return err
		}
		return stillUsable(bg, conn)
	})
	ck.check("project key refused on a tenant: "+c.MsgProjectScoped, func() error {
		conn, err := pgxConnect(c.ProjectURL)
		if err == nil {
			conn.Close(bg)
			return errors.New("connected")
		}
		return wantPgError(err, "FATAL", "28000", c.MsgProjectScoped)
	})
}

func poolChecks(bg context.Context, c conf) error {
	cfg, err := pgxpool.ParseConfig(c.URL + "&pool_max_conns=4&pool_max_conn_lifetime=1500s")
	if err != nil {
		return err
	}
	if cfg.MaxConnLifetime != 1500*time.Second {
		return fmt.Errorf("MaxConnLifetime %s", cfg.MaxConnLifetime)
	}
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				var n int
				if err := pool.QueryRow(ctx, "SELECT count(*) FROM accounts WHERE balance >= $1", i).Scan(&n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// Pre-ping: a pooled connection whose backend died is found and replaced
	// (pgxpool pings a connection idle for more than a second before use).
	one, err := pgxpool.New(ctx, c.URL+"&pool_max_conns=1&pool_max_conn_lifetime=1500s")
	if err != nil {
		return err
	}
	defer one.Close()
	var pid int32
	if err := one.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return err
	}
	if err := terminate(ctx, c.URL, pid); err != nil {
		return err
	}
	time.Sleep(1100 * time.Millisecond)
	var x int
	if err := one.QueryRow(ctx, "SELECT 1").Scan(&x); err != nil {
		return fmt.Errorf("after its backend was terminated: %w", err)
	}
	return nil
}

// terminate ends a backend session from another connection of the same role.
func terminate(ctx context.Context, url string, pid int32) error {
	conn, err := pgxConnect(url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		return fmt.Errorf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	return nil
}

func rollbackLeavesNothing(bg context.Context, conn *pgx.Conn) error {
	var before, inside, after int
	if err := conn.QueryRow(bg, "SELECT count(*) FROM accounts").Scan(&before); err != nil {
		return err
	}
	tx, err := conn.Begin(bg)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(bg, "INSERT INTO accounts (name, email) VALUES ('tx', 'tx@test.com')"); err != nil {
		return err
	}
	if _, err := tx.Exec(bg, "DELETE FROM accounts WHERE name = 'Bob'"); err != nil {
		return err
	}
	if err := tx.QueryRow(bg, "SELECT count(*) FROM accounts").Scan(&inside); err != nil {
		return err
	}
	if err := tx.Rollback(bg); err != nil {
		return err
	}
	if err := conn.QueryRow(bg, "SELECT count(*) FROM accounts").Scan(&after); err != nil {
		return err
	}
	if inside != before || after != before {
		return fmt.Errorf("counts before %d, inside %d, after rollback %d", before, inside, after)
	}
	return nil
}

func stillUsable(ctx context.Context, conn *pgx.Conn) error {
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("session unusable afterwards: %w", err)
	}
	return nil
}

// noBackendRunning polls (up to 5 s) until no active backend runs a query
// containing marker: the cancel reached PostgreSQL, not just the client.
func noBackendRunning(bg context.Context, conn *pgx.Conn, marker string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		err := conn.QueryRow(bg, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", marker).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d backend(s) still running the cancelled pg_sleep after 5s", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func wantPgError(err error, severity, code, message string) error {
	if err == nil {
		return fmt.Errorf("no error, want %s %s %q", severity, code, message)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return fmt.Errorf("want a PostgreSQL error %s %q, got %v", code, message, err)
	}
	if pe.Severity != severity || pe.Code != code || pe.Message != message {
		return fmt.Errorf("got %s %s %q, want %s %s %q", pe.Severity, pe.Code, pe.Message, severity, code, message)
	}
	return nil
}

// rowReader is what pgx.Rows and *sql.Rows share.
type rowReader interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// checkSeries reads the rows of "SELECT i, repeat('x', 20) FROM
// generate_series(1, want)" one by one and checks their count and sum.
func checkSeries(rows rowReader, want int64) error {
	var n, sum int64
	for rows.Next() {
		var i int64
		var s string
		if err := rows.Scan(&i, &s); err != nil {
			return err
		}
		n, sum = n+1, sum+i
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != want || sum != want*(want+1)/2 {
		return fmt.Errorf("%d rows, sum %d", n, sum)
	}
	return nil
}
