package actors

import (
	"context"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors/backend"
	"tdb/fsm"
)

// DefaultJournalSweep is Reconciler.JournalSweep's default: a connection
// to each tenant workspace's database that often.
const DefaultJournalSweep = 5 * time.Minute

// sweepJournals records, as soon as the node leads and then every
// JournalSweep, what the DDL journal of each tenant workspace holds: DDL
// that committed and that no session recorded (its node stopped, or could
// not reach the leader for longer than its record waits). The next DDL of
// the workspace would record it first anyway; the sweep is for a workspace
// where none comes, whose blueprint would lack it until then. A workspace
// whose capture lock a session holds is passed over: that session read the
// journal when it took the lock.
func (r *Reconciler) sweepJournals(ctx context.Context, term *leaderTerm) {
	leading := false
	next := time.Now()
	tick := time.NewTicker(r.LeaderPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !r.IsLeader() {
			leading = false
			continue
		}
		if !leading {
			leading, next = true, time.Now() // a new term: the last leader may have left rows
		}
		if time.Now().Before(next) {
			continue
		}
		next = time.Now().Add(r.JournalSweep)
		r.sweepOnce(term.context(ctx))
	}
}

// journalTarget is a tenant workspace database whose journal a sweep reads.
type journalTarget struct {
	db        fsm.Database
	url       string
	workspace string
}

// sweepOnce reads the journal of every tenant workspace that keeps one, in
// turn, while ctx (the leader's term) lasts.
func (r *Reconciler) sweepOnce(ctx context.Context) {
	var targets []journalTarget
	r.FSM.View(func(s *fsm.State) {
		for _, d := range s.Databases {
			if d.Kind != fsm.KindWorkspace || d.Status != fsm.StatusReady || d.Guard < backend.JournalGuard {
				continue
			}
			ws, _, ok := fsm.ParseDatabase(d.Logical)
			b := s.Backends[d.Backend]
			if !ok || b == nil {
				continue
			}
			if p := s.Projects[d.ProjectID]; p == nil || p.Workspaces[ws] == nil || p.Workspaces[ws].Mode != fsm.ModeTenant {
				continue
			}
			targets = append(targets, journalTarget{db: *d, url: b.URL, workspace: ws})
		}
	})
	for _, t := range targets {
		if ctx.Err() != nil {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, r.StepTimeout)
		_, err := backend.SweepJournal(sctx, t.url, t.db.Name, backend.NewJournalRecorder(r.FSM, t.db.ProjectID, t.workspace, time.Now,
			func(cmd *fsm.AddBlueprintVersion) error {
				_, _, err := r.Propose.Apply(sctx, fsm.CmdAddBlueprintVersion, cmd)
				return err
			}, func(format string, args ...any) { r.Logf("reconciler: journal sweep: "+format, args...) }))
		if errors.Is(err, backend.ErrNoJournal) {
			// Every DDL batch of the workspace would fail on the lock's
			// Query, which asks the journal: install the guard again.
			r.Logf("reconciler: %s has lost its DDL journal: installing guard version %d again", t.db.Label(), t.db.Guard)
			err = backend.InstallGuard(sctx, t.url, t.db.Name, backend.Kind(t.db.Kind), t.db.Guard)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			r.Logf("reconciler: journal sweep of %s: %v (next sweep in %s)", t.db.Label(), err, r.JournalSweep)
		}
	}
}
