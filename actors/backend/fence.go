package backend

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// Fence identifies the leader work a connection does: the cluster whose
// leader does it and the raft term it leads in. A server keeps, per
// cluster, the highest term of a leader that acted on it; a connection of
// a lower term is refused or terminated there, so a leader frozen (SIGSTOP,
// a VM pause) while at work runs nothing more on a server once the next
// leader has acted on it, even before raft tells it that it was deposed.
//
// The fence is a NOLOGIN role per cluster (RoleName) whose comment holds
// the term: roles and their comments are shared catalogs, so a connection
// to any database of the server reads it in one query. It is raised under
// an advisory lock in the superuser URL's own database, so two leaders
// racing end at the higher term. A fenced connection's application_name
// (tdb-fence <cluster> <term>) names its term in pg_stat_activity from its
// startup on; after the raise, every connection of the cluster with a lower
// term is terminated. A connection that read the fence before the raise was
// visible before the raise, so it is terminated; one that reads it after
// is refused: no statement of an older term runs on the server once the
// raise returned.
type Fence struct {
	Cluster string // the cluster's ID (fsm.SetClusterID)
	Term    uint64 // the raft term of the leader doing the work
}

// ErrFenced marks the error of leader work on a server where a leader of
// a later term of the same cluster has acted: the work's term is over, as
// if its context had ended, and the next leader does it.
var ErrFenced = errors.New("backend fenced by a later leader")

// fenceLockKey names the advisory lock, in the superuser URL's database,
// under which a fence is raised.
const fenceLockKey = 0x7464625f66656e63 // "tdb_fenc"

// fenceClusterLen is how much of the cluster ID fences use: application_name
// holds 63 bytes, "tdb-fence " + 32 + " " + a term of 20 digits fills it.
// Cluster IDs are random, 32 hex digits when drawn (node.newClusterID).
const fenceClusterLen = 32

// fenceTerminateWait bounds the wait for a terminated connection to end.
const fenceTerminateWait = 10 * time.Second

type fenceCtxKey struct{}

// WithFence returns ctx carrying f: connections opened under it are leader
// work of f's cluster and term. A fence without a cluster ID or term (a
// cluster of a build from before IDs) is not carried.
func WithFence(ctx context.Context, f Fence) context.Context {
	if f.Cluster == "" || f.Term == 0 {
		return ctx
	}
	return context.WithValue(ctx, fenceCtxKey{}, f)
}

// LeaderConfirm confirms with the cluster that this node leads in term,
// fenced at fencedAt on a server (above term): raft's VerifyLeader, which a
// quorum answers, and the term unchanged after it. Nil when it does.
type LeaderConfirm func(term, fencedAt uint64) error

type confirmCtxKey struct{}

// WithLeaderConfirm returns ctx carrying confirm, which a fenced connection
// asks when it finds its cluster's fence above its term. A leader that a
// quorum confirms in its term has no later leader in its cluster, so such a
// fence is of a history the cluster no longer has: one whose raft state was
// restored from an older copy (a disk snapshot of every node) after leaders
// of later terms had acted. Without the confirmation that cluster's leaders
// would be refused on the server until raft's terms caught up.
func WithLeaderConfirm(ctx context.Context, confirm LeaderConfirm) context.Context {
	if confirm == nil {
		return ctx
	}
	return context.WithValue(ctx, confirmCtxKey{}, confirm)
}

// FenceOf returns the fence ctx carries, if any.
func FenceOf(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceCtxKey{}).(Fence)
	return f, ok
}

func (f Fence) cluster() string {
	if len(f.Cluster) > fenceClusterLen {
		return f.Cluster[:fenceClusterLen]
	}
	return f.Cluster
}

// RoleName is the role whose comment holds the fence of f's cluster.
func (f Fence) RoleName() string { return "tdb_fence_" + f.cluster() }

// appPrefix starts the application_name of every fenced connection of f's
// cluster.
func (f Fence) appPrefix() string { return "tdb-fence " + f.cluster() + " " }

// AppName is the application_name of f's connections.
func (f Fence) AppName() string { return f.appPrefix() + strconv.FormatUint(f.Term, 10) }

func (f Fence) refused(at uint64) error {
	return errors.Mark(errors.Newf("backend fenced by leader term %d: this node's term %d is over", at, f.Term), ErrFenced)
}

// querier is a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readFence reads the term the server's fence of f's cluster holds, 0
// when there is none.
func readFence(ctx context.Context, q querier, f Fence) (term uint64, exists bool, err error) {
	var comment *string
	err = q.QueryRow(ctx, `SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname = $1`,
		f.RoleName()).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, errors.Wrap(err, "read the leader fence")
	}
	if comment == nil {
		return 0, true, nil
	}
	term, err = strconv.ParseUint(*comment, 10, 64)
	if err != nil {
		return 0, true, errors.Wrapf(err, "read the leader fence of role %s", f.RoleName())
	}
	return term, true, nil
}

// checkFence is run by each fenced connection right after it opens: it is
// refused when the fence is above its term (unless the leader is confirmed,
// WithLeaderConfirm), and raises the fence to its term when it is below
// (its leader's first work on the server in the term).
func checkFence(ctx context.Context, conn *pgx.Conn, superuserURL string, f Fence) error {
	at, _, err := readFence(ctx, conn, f)
	switch {
	case err != nil:
		return err
	case at > f.Term:
		confirm, _ := ctx.Value(confirmCtxKey{}).(LeaderConfirm)
		if confirm == nil || confirm(f.Term, at) != nil {
			return f.refused(at)
		}
		// Confirmed after the fence was read: it may go back to f's term,
		// if it still holds what was read (a leader elected since the
		// confirmation raised it, or took it back itself, first).
		return raiseFence(ctx, superuserURL, f, at)
	case at < f.Term:
		return raiseFence(ctx, superuserURL, f, 0)
	}
	return nil
}

// raiseFence raises the fence of f's cluster on the server to f's term,
// never lowering it but from stale (0: none), then terminates the
// connections of the cluster's other terms (lower ones; any other when it
// took the fence back from stale) and waits until they are gone.
func raiseFence(ctx context.Context, superuserURL string, f Fence, stale uint64) error {
	conn, err := dial(ctx, superuserURL, "", f.AppName())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	role := ident(f.RoleName())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(fenceLockKey)); err != nil {
			return errors.Wrap(err, "lock the leader fence")
		}
		at, exists, err := readFence(ctx, tx, f)
		if err != nil {
			return err
		}
		if at > f.Term && (stale == 0 || at != stale) {
			return f.refused(at)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN"); err != nil {
				return errors.Wrapf(err, "create the leader fence role %s", f.RoleName())
			}
		}
		if at != f.Term || !exists {
			// COMMENT takes no parameters; the term is digits only.
			if _, err := tx.Exec(ctx, "COMMENT ON ROLE "+role+" IS '"+strconv.FormatUint(f.Term, 10)+"'"); err != nil {
				return errors.Wrapf(err, "raise the leader fence %s", f.RoleName())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return terminateOtherTerms(ctx, conn, f, stale != 0)
}

// terminateOtherTerms terminates the connections of f's cluster whose term
// is below f's (any other than f's when all), and waits until they are gone.
func terminateOtherTerms(ctx context.Context, conn *pgx.Conn, f Fence, all bool) error {
	prefix := f.appPrefix()
	rows, err := conn.Query(ctx, `SELECT pid, application_name FROM pg_catalog.pg_stat_activity
		WHERE left(application_name, length($1)) = $1 AND pid <> pg_backend_pid()`, prefix)
	if err != nil {
		return errors.Wrap(err, "list the connections of earlier leaders")
	}
	var pids []int32
	for rows.Next() {
		var pid int32
		var app string
		if err := rows.Scan(&pid, &app); err != nil {
			rows.Close()
			return errors.Wrap(err, "list the connections of earlier leaders")
		}
		if term, err := strconv.ParseUint(strings.TrimPrefix(app, prefix), 10, 64); err == nil && (term < f.Term || all && term != f.Term) {
			pids = append(pids, pid)
		}
	}
	if err := rows.Err(); err != nil {
		return errors.Wrap(err, "list the connections of earlier leaders")
	}
	if len(pids) == 0 {
		return nil
	}
	terminate := "SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid"
	if serverVersionNum(ctx, conn) >= 140000 {
		// Waits until each is gone (or the wait passes).
		terminate = "SELECT pg_terminate_backend(pid, " + strconv.FormatInt(fenceTerminateWait.Milliseconds(), 10) + ") FROM unnest($1::int4[]) AS pid"
	}
	if _, err := conn.Exec(ctx, terminate, pids); err != nil {
		return errors.Wrap(err, "terminate the connections of earlier leaders")
	}
	// Each statement is a transaction of its own: pg_stat_activity is read
	// afresh.
	deadline := time.Now().Add(fenceTerminateWait)
	for {
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1)", pids).Scan(&left); err != nil {
			return errors.Wrap(err, "wait for the connections of earlier leaders to end")
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Newf("%d connection(s) of earlier leaders still alive after %s", left, fenceTerminateWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// CheckFence tells whether the leader work of ctx's fence may still act on
// the server at superuserURL: an error marked ErrFenced when a later
// leader of its cluster has acted there. Without a fence in ctx it checks
// nothing.
func CheckFence(ctx context.Context, superuserURL string) error {
	if _, ok := FenceOf(ctx); !ok {
		return nil
	}
	conn, err := connect(ctx, superuserURL, "")
	if err != nil {
		return err
	}
	return conn.Close(context.Background())
}
