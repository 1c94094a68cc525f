package drivers_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// stdlibChecks runs the suite's checks with database/sql over pgx/stdlib.
func stdlibChecks(ck *checker, c conf) {
	bg := context.Background()
	db, err := sql.Open("pgx", c.URL)
	if err != nil {
		ck.check("sql.Open", func() error { return err })
		return
	}
	defer db.Close()
	// The seed's pool advice: recycle before the pooler's 1800 s idle timeout.
	db.SetConnMaxLifetime(1500 * time.Second)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)

	ck.check("seed query (SELECT id, name, balance FROM accounts) into int, string, float64", func() error {
		rows, err := db.QueryContext(bg, "SELECT id, name, balance FROM accounts")
		if err != nil {
			return err
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var id int
			var name string
			var balance float64
			if err := rows.Scan(&id, &name, &balance); err != nil {
				return err
			}
			got = append(got, fmt.Sprintf("%d: %s ($%.2f)", id, name, balance))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(got) != 1 || !strings.HasSuffix(got[0], ": Bob ($2000.00)") {
			return fmt.Errorf("rows %q", got)
		}
		return nil
	})
	ck.check("db.Prepare'd statement reused 200 times, then queried 200 times", func() error {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		ins, err := db.PrepareContext(ctx, "INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3)")
		if err != nil {
			return err
		}
		defer ins.Close()
		sel, err := db.PrepareContext(ctx, "SELECT balance FROM accounts WHERE email = $1")
		if err != nil {
			return err
		}
		defer sel.Close()
		for i := 0; i < 200; i++ {
			if _, err := ins.ExecContext(ctx, fmt.Sprintf("s%d", i), fmt.Sprintf("s%d@test.com", i), i); err != nil {
				return fmt.Errorf("exec %d: %w", i, err)
			}
		}
		for i := 0; i < 200; i++ {
			var b float64
			if err := sel.QueryRowContext(ctx, fmt.Sprintf("s%d@test.com", i)).Scan(&b); err != nil || b != float64(i) {
				return fmt.Errorf("query %d: %v, %v", i, b, err)
			}
		}
		return nil
	})
	ck.check("transaction rolled back leaves nothing", func() error {
		var before, after int
		if err := db.QueryRowContext(bg, "SELECT count(*) FROM accounts").Scan(&before); err != nil {
			return err
		}
		tx, err := db.BeginTx(bg, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(bg, "INSERT INTO accounts (name, email) VALUES ($1, $2)", "tx", "tx@test.com"); err != nil {
			return err
		}
		if err := tx.Rollback(); err != nil {
			return err
		}
		if err := db.QueryRowContext(bg, "SELECT count(*) FROM accounts").Scan(&after); err != nil {
			return err
		}
		if after != before {
			return fmt.Errorf("count %d before, %d after rollback", before, after)
		}
		return nil
	})
	ck.check(fmt.Sprintf("large result read row by row (%d rows)", c.Rows), func() error {
		ctx, cancel := context.WithTimeout(bg, 60*time.Second)
		defer cancel()
		rows, err := db.QueryContext(ctx, "SELECT i, repeat('x', 20) FROM generate_series(1, $1::int) i", c.Rows)
		if err != nil {
			return err
		}
		defer rows.Close()
		return checkSeries(rows, int64(c.Rows))
	})
	ck.check("DDL refused on a tenant: "+c.MsgDDL, func() error {
		_, err := db.ExecContext(bg, "CREATE TABLE evil (id int)")
		if err := wantPgError(err, "ERROR", "42501", c.MsgDDL); err != nil {
			return err
		}
		return db.PingContext(bg)
	})
	ck.check("context deadline cancels pg_sleep on the backend", func() error {
		ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := db.ExecContext(ctx, "SELECT pg_sleep(30) /* stdlib-cancel */")
		if err == nil {
			return errors.New("pg_sleep(30) returned without error")
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("cancel took %s", time.Since(start))
		}
		conn, err := pgxConnect(c.URL)
		if err != nil {
			return err
		}
		defer conn.Close(bg)
		return noBackendRunning(bg, conn, "stdlib-cancel")
	})
	ck.check("pool: a connection whose backend died is replaced before use (ConnMaxLifetime 1500s)", func() error {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		db.SetMaxOpenConns(1)
		defer db.SetMaxOpenConns(4)
		var pid int32
		if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		if err := terminate(ctx, c.URL, pid); err != nil {
			return err
		}
		time.Sleep(1100 * time.Millisecond) // pgx/stdlib pings a connection idle for more than 1 s
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return fmt.Errorf("after its backend was terminated: %w", err)
		}
		return nil
	})
	ck.check("workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT", func() error {
		ws, err := sql.Open("pgx", c.WorkspaceURL)
		if err != nil {
			return err
		}
		defer ws.Close()
		_, err = ws.ExecContext(bg, "INSERT INTO accounts (name, email) VALUES ($1, $2)", "ws", "stdlib-ws@test.com")
		return err
	})
	ck.check("read key: SELECT works, INSERT fails 42501 "+c.MsgReadInsert, func() error {
		ro, err := sql.Open("pgx", c.ReadURL)
		if err != nil {
			return err
		}
		defer ro.Close()
		ro.SetMaxOpenConns(1)
		var n int
		if err := ro.QueryRowContext(bg, "SELECT count(*) FROM accounts").Scan(&n); err != nil {
			return err
		}
		_, err = ro.ExecContext(bg, "INSERT INTO accounts (name, email) VALUES ($1, $2)", "r", "stdlib-r@test.com")
		if err := wantPgError(err, "ERROR", "42501", c.MsgReadInsert); err != nil {
			return err
		}
		return ro.QueryRowContext(bg, "SELECT count(*) FROM accounts").Scan(&n)
	})
	ck.check("project key refused on a tenant: "+c.MsgProjectScoped, func() error {
		pk, err := sql.Open("pgx", c.ProjectURL)
		if err != nil {
			return err
		}
		defer pk.Close()
		return wantPgError(pk.PingContext(bg), "FATAL", "28000", c.MsgProjectScoped)
	})
}
