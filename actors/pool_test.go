package actors

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"tdb/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

func testPool(t *testing.T) (*Pool, PoolKey, func(context.Context) (*BackendConn, error)) {
	t.Helper()
	url := testpg.Shared(t).URL()
	key := PoolKey{Backend: "local", Database: "postgres", Role: "postgres"}
	dial := func(ctx context.Context) (*BackendConn, error) {
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			return nil, err
		}
		return Hijacked(key, pc, "tcp", "")
	}
	p := &Pool{}
	t.Cleanup(p.Close)
	return p, key, dial
}

func TestPoolReusesResetSessions(t *testing.T) {
	p, key, dial := testPool(t)
	ctx := context.Background()
	bc, reused, err := p.Get(ctx, key, dial)
	if err != nil || reused {
		t.Fatalf("first get: reused=%v err=%v", reused, err)
	}
	pid := bc.PID
	// Leave state behind: a setting, a prepared statement, a temp table.
	for _, sql := range []string{"SET application_name = 'dirty'", "PREPARE p AS SELECT 1", "CREATE TEMP TABLE tt (id int)"} {
		if err := bc.Exec(sql, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if bc.Params["application_name"] != "dirty" {
		t.Fatalf("ParameterStatus not tracked: %v", bc.Params["application_name"])
	}
	if err := bc.Reset(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.Put(bc)

	bc2, reused, err := p.Get(ctx, key, dial)
	if err != nil || !reused || bc2.PID != pid {
		t.Fatalf("second get: reused=%v pid %d vs %d err=%v", reused, bc2.PID, pid, err)
	}
	if bc2.Params["application_name"] != "" {
		t.Fatalf("application_name survived the reset: %q", bc2.Params["application_name"])
	}
	if err := bc2.Exec("EXECUTE p", 5*time.Second); err == nil {
		t.Fatal("prepared statement survived the reset")
	}
	if err := bc2.Exec("SELECT * FROM tt", 5*time.Second); err == nil {
		t.Fatal("temp table survived the reset")
	}
	bc2.Conn.Close()
}

func TestPoolDropsDeadAndReapsIdle(t *testing.T) {
	p, key, dial := testPool(t)
	ctx := context.Background()
	bc, _, err := p.Get(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	dead := bc.PID
	p.Put(bc)
	// Kill the idle session from another connection: Get must not hand it out.
	killer, _ := dial(ctx)
	if err := killer.Exec("SELECT pg_terminate_backend("+itoa(int(dead))+")", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	killer.Conn.Close()
	time.Sleep(200 * time.Millisecond)
	bc, reused, err := p.Get(ctx, key, dial)
	if err != nil || reused || bc.PID == dead {
		t.Fatalf("got pid %d reused=%v err=%v after its backend was terminated", bc.PID, reused, err)
	}
	p.Put(bc)
	if n := p.Reap(time.Now().Add(time.Hour)); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	if p.IdleCount() != 0 {
		t.Fatal("idle sessions left after reap")
	}
}

func TestParamsKey(t *testing.T) {
	a := ParamsKey(map[string]string{"user": "u", "database": "d", "application_name": "x", "DateStyle": "ISO"})
	b := ParamsKey(map[string]string{"DateStyle": "ISO", "application_name": "x", "user": "other"})
	c := ParamsKey(map[string]string{"DateStyle": "ISO", "application_name": "y"})
	if a != b || a == c {
		t.Fatalf("ParamsKey: %q %q %q", a, b, c)
	}
}
