package backend_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/internal/testpg"
)

// fenceCluster is a fresh cluster ID whose fence role is dropped when t
// ends.
func fenceCluster(t *testing.T, url string) string {
	t.Helper()
	id := randHex(16)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		role := backend.Fence{Cluster: id}.RoleName()
		if _, err := c.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	return id
}

// fenceAt reads the term the server's fence of cluster holds.
func fenceAt(t *testing.T, url, cluster string) string {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var at *string
	if err := c.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1`,
		backend.Fence{Cluster: cluster}.RoleName()).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if at == nil {
		return "<none>"
	}
	return *at
}

// TestFenceRefusesAnEarlierTerm: once a leader of term 2 acted on a
// server, the connections of term 1 are refused there with ErrFenced, and
// a raise to 1 leaves the fence at 2. Another cluster's term 1, and work
// without a fence, are not refused.
func TestFenceRefusesAnEarlierTerm(t *testing.T) {
	t.Parallel()
	url := testpg.Shared(t).URL()
	cluster, other := fenceCluster(t, url), fenceCluster(t, url)
	term := func(c string, n uint64) context.Context {
		return backend.WithFence(ctx, backend.Fence{Cluster: c, Term: n})
	}

	if _, err := backend.Ping(term(cluster, 1), url); err != nil {
		t.Fatalf("term 1 on a server no leader fenced: %v", err)
	}
	if got := fenceAt(t, url, cluster); got != "1" {
		t.Fatalf("after term 1 acted: fence at %s, want 1", got)
	}
	if _, err := backend.Ping(term(cluster, 2), url); err != nil {
		t.Fatalf("term 2 after term 1: %v", err)
	}
	for range 2 {
		_, err := backend.Ping(term(cluster, 1), url)
		if !errors.Is(err, backend.ErrFenced) || !strings.Contains(err.Error(), "backend fenced by leader term 2: this node's term 1 is over") {
			t.Fatalf("term 1 after term 2: %v, want ErrFenced", err)
		}
		if got := fenceAt(t, url, cluster); got != "2" {
			t.Fatalf("after term 1 tried again: fence at %s, want 2", got)
		}
	}
	if _, err := backend.Ping(term(other, 1), url); err != nil {
		t.Fatalf("another cluster's term 1: %v", err)
	}
	if _, err := backend.Ping(ctx, url); err != nil {
		t.Fatalf("without a fence: %v", err)
	}
	if err := backend.CheckFence(term(cluster, 1), url); !errors.Is(err, backend.ErrFenced) {
		t.Fatalf("CheckFence of term 1: %v, want ErrFenced", err)
	}
	if err := backend.CheckFence(term(cluster, 2), url); err != nil {
		t.Fatalf("CheckFence of term 2: %v", err)
	}
}

// TestFenceRacingLeadersEndAtTheHighestTerm: raises of many terms at once
// leave the fence at the highest, whose work gets through.
func TestFenceRacingLeadersEndAtTheHighestTerm(t *testing.T) {
	t.Parallel()
	url := testpg.Shared(t).URL()
	cluster := fenceCluster(t, url)
	var wg sync.WaitGroup
	for n := uint64(1); n <= 8; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// An earlier term may be refused, or terminated by a later
			// term's raise: only the last must get through.
			_, err := backend.Ping(backend.WithFence(ctx, backend.Fence{Cluster: cluster, Term: n}), url)
			if err != nil && n == 8 {
				t.Errorf("term %d: %v", n, err)
			}
		}()
	}
	wg.Wait()
	if got := fenceAt(t, url, cluster); got != "8" {
		t.Fatalf("fence at %s, want 8", got)
	}
}

// TestFenceTerminatesAnEarlierTermInFlight: a statement of term 1 running
// when term 2 first acts on the server is terminated before term 2's work
// starts; one of another cluster, and one without a fence, go on.
func TestFenceTerminatesAnEarlierTermInFlight(t *testing.T) {
	t.Parallel()
	f := provision(t, "fence_", backend.KindTenant)
	cluster, other := fenceCluster(t, f.url), fenceCluster(t, f.url)

	type run struct {
		name string
		ctx  context.Context
		done chan error
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	runs := []*run{
		{name: "term 1", ctx: backend.WithFence(sctx, backend.Fence{Cluster: cluster, Term: 1})},
		{name: "another cluster's term 1", ctx: backend.WithFence(sctx, backend.Fence{Cluster: other, Term: 1})},
		{name: "no fence", ctx: sctx},
	}
	for _, r := range runs {
		r.done = make(chan error, 1)
		go func() {
			r.done <- backend.RunAsOwner(r.ctx, f.url, f.spec.Name, func(tx pgx.Tx) error {
				_, err := tx.Exec(r.ctx, "SELECT pg_sleep(600) /* "+r.name+" */")
				return err
			})
		}()
	}
	su := f.super()
	sleeping := func(name string) bool {
		t.Helper()
		var n int
		if err := su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'`,
			"SELECT pg_sleep(600) /* "+name+" */").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for _, r := range runs {
		for !sleeping(r.name) {
			select {
			case err := <-r.done:
				t.Fatalf("%s ended before it slept: %v", r.name, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	if _, err := backend.Ping(backend.WithFence(ctx, backend.Fence{Cluster: cluster, Term: 2}), f.url); err != nil {
		t.Fatalf("term 2: %v", err)
	}
	// The raise returns once the connections it terminated are gone.
	if sleeping("term 1") {
		t.Fatal("term 1's statement still runs after term 2 acted")
	}
	if err := <-runs[0].done; err == nil {
		t.Fatal("term 1's statement ended without an error")
	}
	for _, r := range runs[1:] {
		if !sleeping(r.name) {
			t.Fatalf("%s's statement was ended by another cluster's fence", r.name)
		}
		select {
		case err := <-r.done:
			t.Fatalf("%s ended: %v", r.name, err)
		default:
		}
	}
	stop()
	for _, r := range runs[1:] {
		<-r.done
	}
}

// TestFenceTakenBackByAConfirmedLeader: a fence above a connection's term
// goes back to that term when its leader is confirmed (WithLeaderConfirm):
// the cluster's raft state is older than the server's fence. Unconfirmed,
// it is refused. The take-back happens only from the fence the connection
// read: a later leader that raised it meanwhile keeps it. A statement of
// the fence's term running there is terminated.
func TestFenceTakenBackByAConfirmedLeader(t *testing.T) {
	t.Parallel()
	f := provision(t, "fenceback_", backend.KindTenant)
	cluster := fenceCluster(t, f.url)
	at := func(n uint64, confirm backend.LeaderConfirm) context.Context {
		return backend.WithLeaderConfirm(backend.WithFence(ctx, backend.Fence{Cluster: cluster, Term: n}), confirm)
	}
	notConfirmed := func(uint64, uint64) error { return errors.New("not the leader") }

	// Term 9 of a history the cluster lost runs a statement.
	sctx, stop := context.WithCancel(at(9, nil))
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- backend.RunAsOwner(sctx, f.url, f.spec.Name, func(tx pgx.Tx) error {
			_, err := tx.Exec(sctx, "SELECT pg_sleep(600) /* term 9 */")
			return err
		})
	}()
	su := f.super()
	for {
		var n int
		if err := su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600) /* term 9 */' AND state = 'active'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("term 9 ended before it slept: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}

	if _, err := backend.Ping(at(3, notConfirmed), f.url); !errors.Is(err, backend.ErrFenced) {
		t.Fatalf("term 3, not confirmed, under a fence of term 9: %v, want ErrFenced", err)
	}
	var asked [2]uint64
	if _, err := backend.Ping(at(3, func(term, fencedAt uint64) error {
		asked = [2]uint64{term, fencedAt}
		return nil
	}), f.url); err != nil {
		t.Fatalf("term 3, confirmed, under a fence of term 9: %v", err)
	}
	if asked != [2]uint64{3, 9} {
		t.Fatalf("confirm asked for %v, want term 3 fenced at 9", asked)
	}
	if got := fenceAt(t, f.url, cluster); got != "3" {
		t.Fatalf("fence at %s after the confirmed take-back, want 3", got)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("term 9's statement ended without an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("term 9's statement still runs after term 3 took the fence back")
	}
	if _, err := backend.Ping(at(2, nil), f.url); !errors.Is(err, backend.ErrFenced) {
		t.Fatalf("term 2 after term 3: %v, want ErrFenced", err)
	}

	// A leader of term 12 raises the fence while term 5 is being
	// confirmed under the fence of term 7: term 5 is refused.
	if _, err := backend.Ping(at(7, nil), f.url); err != nil {
		t.Fatal(err)
	}
	_, err := backend.Ping(at(5, func(uint64, uint64) error {
		_, err := backend.Ping(at(12, nil), f.url)
		return err
	}), f.url)
	if !errors.Is(err, backend.ErrFenced) || !strings.Contains(err.Error(), "leader term 12") {
		t.Fatalf("term 5 confirmed after term 12 acted: %v, want refused by term 12", err)
	}
	if got := fenceAt(t, f.url, cluster); got != "12" {
		t.Fatalf("fence at %s, want 12", got)
	}
}
