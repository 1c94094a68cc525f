package actors

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"tdb/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

func testPool(t *testing.T) (*Pool, PoolKey) {
	t.Helper()
	url := testpg.Shared(t).URL()
	key := PoolKey{Backend: "local", Database: "postgres", Role: "postgres"}
	p := &Pool{Dial: func(ctx context.Context, k PoolKey) (*BackendConn, error) {
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			return nil, err
		}
		return Hijacked(k, pc, "tcp", "")
	}}
	t.Cleanup(p.Close)
	return p, key
}

func TestPoolReusesResetSessions(t *testing.T) {
	p, key := testPool(t)
	ctx := context.Background()
	bc, reused, err := p.Get(ctx, key)
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

	bc2, reused, err := p.Get(ctx, key)
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
	// A new client's startup parameters are applied and reported.
	err = bc2.Configure(map[string]string{
		"application_name": "it's me", "DateStyle": "ISO, DMY", "options": `-c search_path=a,public --statement-timeout=5s`,
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if bc2.Params["application_name"] != "it's me" || bc2.Params["DateStyle"] != "ISO, DMY" {
		t.Fatalf("params after configure: %v", bc2.Params)
	}
	bc2.Conn.Close()
}

func TestPoolDropsDeadAndReapsIdle(t *testing.T) {
	p, key := testPool(t)
	ctx := context.Background()
	bc, _, err := p.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	dead := bc.PID
	p.Put(bc)
	// Kill the idle session from another connection: Get must not hand it out.
	killer, _ := p.Dial(ctx, key)
	if err := killer.Exec("SELECT pg_terminate_backend("+itoa(int(dead))+")", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	killer.Conn.Close()
	time.Sleep(200 * time.Millisecond)
	bc, reused, err := p.Get(ctx, key)
	if err != nil || reused || bc.PID == dead {
		t.Fatalf("got pid %d reused=%v err=%v after its backend was terminated", bc.PID, reused, err)
	}
	p.Put(bc)
	if n := p.Reap(time.Now().Add(time.Hour)); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	if len(p.Idle()) != 0 {
		t.Fatal("idle sessions left after reap")
	}
}

func TestStartupSets(t *testing.T) {
	got := strings.Join(StartupSets(map[string]string{
		"user": "x", "database": "y", "application_name": "a'b", "options": `-c search_path=x\ y -cwork_mem=4MB`,
	}), "; ")
	want := `SET "application_name" = 'a''b'; SET "search_path" = 'x y'; SET "work_mem" = '4MB'`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
