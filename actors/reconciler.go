package actors

import (
	"context"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors/backend"
	"tdb/fsm"
)

// Proposer commits commands through raft.
type Proposer interface {
	Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error)
}

// Reconciler runs on the raft leader and makes backends match the physical
// databases in the FSM. Every step is idempotent, so a new leader finishes
// whatever a crashed one left half-done. Work in flight stops when this
// node stops leading (leaderTerm).
type Reconciler struct {
	FSM      *fsm.FSM
	Propose  Proposer
	IsLeader func() bool
	// Term is raft's current term: with the state's cluster ID it fences
	// the work on backends (backend.Fence), so that a leader frozen at
	// work cannot act on a backend after the next leader has. Nil leaves
	// the work unfenced.
	Term func() uint64
	// ConfirmLeader lets the work take back a backend's fence above its
	// term once a quorum confirms this node leads in it (a cluster whose
	// raft state is older than its backends'). Nil: it is refused there.
	ConfirmLeader backend.LeaderConfirm
	Logf          func(format string, args ...any)

	Workers     int           // databases provisioned at once, and as many dropped
	Attempts    int           // provisioning tries before a database is marked failed
	RetryDelay  time.Duration // pause between tries
	Resync      time.Duration // full rescan period, on top of change notifications
	StepTimeout time.Duration
	GuardRetry  time.Duration // pause before a failed guard installation is tried again
	LeaderPoll  time.Duration // how often work in flight checks that this node still leads
	// JournalSweep is how often the leader records what the DDL journals
	// of tenant workspaces hold that no session recorded (journalsweep.go).
	JournalSweep time.Duration

	mu       sync.Mutex
	inflight map[string]bool
	// guardRetry holds when a database whose guard could not be installed
	// is tried again: a backend that is down is not asked every resync.
	guardRetry map[string]time.Time
	guarding   bool // the guard worker is at work (startGuards)
	// dropTurn orders the drops of a pass: each drop's start, counted by
	// dropSeq. A drop that has waited longest goes first, so drops that
	// fail pass after pass (a backend that does not answer) do not keep
	// the drop workers from the others.
	dropTurn map[string]uint64
	dropSeq  uint64
}

// Task is one unit of reconciliation for a physical database.
type Task struct {
	Kind     string // "provision", "drop" or "guard"
	Database fsm.Database
	Backend  fsm.Backend
	// Guard is the version of the DDL guard to install (GuardFor).
	Guard    int
	Versions []fsm.BlueprintVersion // for tenants: the blueprint versions to bring it to
}

// Plan lists what needs doing in a state, in a stable order. It is the
// synchronous core of the reconciler.
func Plan(s *fsm.State) []Task {
	var tasks []Task
	// A database provisioned before the DDL guard, or before its current
	// version, gets it installed, once the cluster records it (a node of an
	// older build could not apply SetDatabaseGuard).
	guards := s.CheckProposable(fsm.CmdSetDatabaseGuard) == nil
	guard := GuardFor(s)
	for _, d := range s.Databases {
		var kind string
		switch {
		case d.Status == fsm.StatusProvisioning:
			kind = "provision"
		case d.Status == fsm.StatusDeleting:
			kind = "drop"
		case guards && NeedsGuard(d, guard):
			kind = "guard"
		default:
			continue
		}
		b := s.Backends[d.Backend]
		if b == nil {
			continue
		}
		t := Task{Kind: kind, Database: *d, Backend: *b, Guard: guard}
		if kind == "provision" && d.Kind == fsm.KindTenant {
			if p := s.Projects[d.ProjectID]; p != nil {
				if bp, _, ok := fsm.ParseDatabase(d.Logical); ok && p.Workspaces[bp] != nil {
					t.Versions = append([]fsm.BlueprintVersion(nil), p.Workspaces[bp].Versions...)
				}
			}
		}
		tasks = append(tasks, t)
	}
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].Database.Name < tasks[j].Database.Name })
	return tasks
}

// NeedsGuard reports whether database d is ready and lacks version guard
// of the DDL guard (the reconciler's work; cluster status counts them).
func NeedsGuard(d *fsm.Database, guard int) bool {
	return d.Status == fsm.StatusReady && backend.HasGuard(backend.Kind(d.Kind)) && d.Guard < guard
}

// GuardFor is the version of the DDL guard the databases of state s get:
// the newest, but the DDL journal (backend.JournalGuard) only once every
// node's build records and forgets what the journal holds (log version 8).
// A node of an older build would record a workspace's DDL under an id of
// its own and leave the journal's rows, which the next session would then
// record a second time.
func GuardFor(s *fsm.State) int {
	if s.ActiveLogVersion() < 8 {
		return backend.JournalGuard - 1
	}
	return backend.GuardVersion
}

func (r *Reconciler) defaults() {
	if r.Workers <= 0 {
		r.Workers = 4
	}
	if r.Attempts <= 0 {
		r.Attempts = 3
	}
	if r.RetryDelay <= 0 {
		r.RetryDelay = time.Second
	}
	if r.Resync <= 0 {
		r.Resync = 5 * time.Second
	}
	if r.StepTimeout <= 0 {
		r.StepTimeout = 60 * time.Second
	}
	if r.Logf == nil {
		r.Logf = log.Printf
	}
	if r.GuardRetry <= 0 {
		r.GuardRetry = time.Minute
	}
	if r.JournalSweep <= 0 {
		r.JournalSweep = DefaultJournalSweep
	}
	if r.LeaderPoll <= 0 {
		r.LeaderPoll = defaultLeaderPoll
	}
	r.inflight = map[string]bool{}
	r.guardRetry = map[string]time.Time{}
	r.dropTurn = map[string]uint64{}
}

// Run reconciles whenever the state changes or Resync passes, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	r.defaults()
	sem := make(chan struct{}, r.Workers)
	// Drops have workers of their own, and a pass does not wait for one:
	// the drops on a backend that does not answer (a server gone for good,
	// whose tenants are deleted before it is removed) each take
	// StepTimeout, pass after pass, and would hold up every provisioning.
	dropSem := make(chan struct{}, r.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The work of a pass runs under the context of this node's term as
	// leader: a deposed leader's provisioning could otherwise make again,
	// on a backend slow to answer, the database of a tenant the next
	// leader has deleted and dropped meanwhile, with nothing left to ever
	// drop it.
	term := startLeaderTerm(ctx, &wg, r.IsLeader, termFence(r.FSM, r.Term), r.ConfirmLeader, r.LeaderPoll)
	wg.Add(1)
	go func() { defer wg.Done(); r.sweepJournals(ctx, term) }()
	watchState(ctx, r.FSM, r.Resync, func() {
		if !r.IsLeader() {
			term.end()
			return
		}
		lead := term.context(ctx)
		var tasks, guards []Task
		r.FSM.View(func(s *fsm.State) { tasks = Plan(s) })
		r.orderDrops(tasks)
		for _, t := range tasks {
			if t.Kind == "guard" {
				guards = append(guards, t)
				continue
			}
			if !r.claim(t.Database.Name) {
				continue
			}
			slots := sem
			if t.Kind == "drop" {
				slots = dropSem
				select {
				case dropSem <- struct{}{}:
					r.mu.Lock()
					r.dropSeq++
					r.dropTurn[t.Database.Name] = r.dropSeq
					r.mu.Unlock()
				default:
					r.release(t.Database.Name) // a later pass lists it again
					continue
				}
			} else {
				select {
				case sem <- struct{}{}:
				case <-lead.Done():
					r.release(t.Database.Name)
					return
				}
			}
			wg.Add(1)
			go func(t Task) {
				defer wg.Done()
				defer func() { <-slots }()
				defer r.release(t.Database.Name)
				r.do(lead, t)
			}(t)
		}
		r.startGuards(lead, &wg, guards)
	})
}

// orderDrops puts the drops among tasks in turn order, in the places the
// drops hold: those never started first, then the one started longest ago.
// Sorted by name alone, the drops that fail every time (on a backend that
// does not answer) would take the drop workers again at every pass, and a
// drop after them in name order would never be tried. Turns of databases
// no longer to drop are forgotten.
func (r *Reconciler) orderDrops(tasks []Task) {
	var at []int
	var drops []Task
	for i, t := range tasks {
		if t.Kind == "drop" {
			at = append(at, i)
			drops = append(drops, t)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := make(map[string]uint64, len(drops))
	for _, t := range drops {
		if n, ok := r.dropTurn[t.Database.Name]; ok {
			kept[t.Database.Name] = n
		}
	}
	r.dropTurn = kept
	sort.SliceStable(drops, func(i, j int) bool { return kept[drops[i].Database.Name] < kept[drops[j].Database.Name] })
	for k, i := range at {
		tasks[i] = drops[k]
	}
}

// startGuards hands guard installations to a worker of their own, unless
// it is still at work on earlier ones: after an upgrade every database
// provisioned before it needs one, and they neither wait for the workers
// of provisioning and drops nor hold them up (a backend that does not
// answer makes each installation there wait StepTimeout).
func (r *Reconciler) startGuards(ctx context.Context, wg *sync.WaitGroup, tasks []Task) {
	if len(tasks) == 0 {
		return
	}
	r.mu.Lock()
	busy := r.guarding
	r.guarding = true
	r.mu.Unlock()
	if busy {
		return // the next pass after it is done lists what is left
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			r.mu.Lock()
			r.guarding = false
			r.mu.Unlock()
		}()
		for _, t := range tasks {
			if ctx.Err() != nil || !r.IsLeader() {
				return
			}
			if !r.guardDue(t.Database.Name) || !r.claim(t.Database.Name) {
				continue
			}
			r.guard(ctx, t)
			r.release(t.Database.Name)
		}
	}()
}

func (r *Reconciler) claim(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight[name] {
		return false
	}
	r.inflight[name] = true
	return true
}

func (r *Reconciler) release(name string) {
	r.mu.Lock()
	delete(r.inflight, name)
	r.mu.Unlock()
}

// guardDue reports whether a guard installation for database name may be
// tried now: never tried, or its last failure is GuardRetry old.
func (r *Reconciler) guardDue(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, failed := r.guardRetry[name]
	return !failed || !time.Now().Before(at)
}

func (r *Reconciler) do(ctx context.Context, t Task) {
	switch t.Kind {
	case "provision":
		r.provision(ctx, t)
	case "drop":
		r.drop(ctx, t)
	}
}

func (r *Reconciler) provision(ctx context.Context, t Task) {
	var err error
	var version int
	for attempt := 1; attempt <= r.Attempts; attempt++ {
		if attempt > 1 && !r.toProvision(t.Database.Name) {
			// Deposed, or deleted meanwhile: another try could make again
			// a database the next leader has dropped, and nothing would
			// ever drop it. Whoever leads finishes what is still to do.
			r.Logf("reconciler: provision %s: stopped, no longer this node's to do", t.Database.Label())
			return
		}
		version, err = r.provisionOnce(ctx, t)
		if err == nil || ctx.Err() != nil {
			break
		}
		if fencedOut(ctx, t.Backend.URL, err) {
			r.Logf("reconciler: provision %s: stopped, a later leader acts on the backend: %v", t.Database.Label(), err)
			return
		}
		r.Logf("reconciler: provision %s (attempt %d/%d): %v", t.Database.Label(), attempt, r.Attempts, err)
		select {
		case <-time.After(r.RetryDelay):
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return // the next leader (or this one, later) finishes it
	}
	if err != nil && !r.toProvision(t.Database.Name) {
		// Deposed during the last try: the next leader tries on its own,
		// and a failure recorded now would refuse its result.
		r.Logf("reconciler: provision %s: failed, left to whoever leads", t.Database.Label())
		return
	}
	cmd := &fsm.SetDatabaseStatus{Name: t.Database.Name, Status: fsm.StatusReady, SchemaVersion: &version}
	if err != nil {
		cmd = &fsm.SetDatabaseStatus{Name: t.Database.Name, Status: fsm.StatusFailed, Error: err.Error()}
	}
	if _, _, perr := r.Propose.Apply(ctx, fsm.CmdSetDatabaseStatus, cmd); perr != nil {
		r.Logf("reconciler: record status of %s: %v", t.Database.Label(), perr)
		return
	}
	if err == nil {
		// Ensure installed the current guard: record it, or a later pass
		// installs it again.
		r.recordGuard(ctx, t.Database, t.Guard)
	}
}

// toProvision reports whether this node leads and database name is still
// being provisioned.
func (r *Reconciler) toProvision(name string) bool {
	if !r.IsLeader() {
		return false
	}
	ok := false
	r.FSM.View(func(s *fsm.State) {
		d := s.Databases[name]
		ok = d != nil && d.Status == fsm.StatusProvisioning
	})
	return ok
}

// guard installs the current DDL guard in a ready database that lacks it,
// and records it.
func (r *Reconciler) guard(ctx context.Context, t Task) {
	sctx, cancel := context.WithTimeout(ctx, r.StepTimeout)
	defer cancel()
	name := t.Database.Name
	if backend.GuardUnchanged(name, backend.Kind(t.Database.Kind), t.Database.Guard, t.Guard) {
		// The newer version brings nothing to databases of this kind (the
		// journal, to a tenant's): recorded without a connection, which
		// an upgrade would otherwise open to every tenant's database.
		r.recordGuard(ctx, t.Database, t.Guard)
		return
	}
	if err := backend.InstallGuard(sctx, t.Backend.URL, name, backend.Kind(t.Database.Kind), t.Guard); err != nil {
		if ctx.Err() != nil || errors.Is(err, backend.ErrFenced) {
			return // this node's term is over; were it to lead again, it tries at once
		}
		r.Logf("reconciler: install the guard in %s (next try in %s): %v", t.Database.Label(), r.GuardRetry, err)
		r.mu.Lock()
		r.guardRetry[name] = time.Now().Add(r.GuardRetry)
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	delete(r.guardRetry, name)
	r.mu.Unlock()
	r.Logf("reconciler: installed guard version %d in %s", t.Guard, t.Database.Label())
	r.recordGuard(ctx, t.Database, t.Guard)
}

// recordGuard records that database d holds version guard of the DDL
// guard, when it keeps one and the cluster runs a log version that records
// it.
func (r *Reconciler) recordGuard(ctx context.Context, d fsm.Database, guard int) {
	if !backend.HasGuard(backend.Kind(d.Kind)) {
		return
	}
	var err error
	r.FSM.View(func(s *fsm.State) { err = s.CheckProposable(fsm.CmdSetDatabaseGuard) })
	if err != nil {
		return // recorded once every node's build can: the guard is then installed again
	}
	cmd := &fsm.SetDatabaseGuard{Name: d.Name, Version: guard}
	if _, _, err := r.Propose.Apply(ctx, fsm.CmdSetDatabaseGuard, cmd); err != nil {
		r.Logf("reconciler: record the DDL guard of %s: %v", d.Label(), err)
	}
}

// provisionOnce creates the database and roles, then applies the blueprint
// versions a new tenant lacks, each in its own transaction.
func (r *Reconciler) provisionOnce(ctx context.Context, t Task) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.StepTimeout)
	defer cancel()
	spec := backend.DatabaseSpec{
		Name:  t.Database.Name,
		Kind:  backend.Kind(t.Database.Kind),
		Guard: t.Guard,
		Passwords: backend.Passwords{
			Admin: t.Database.Passwords.Admin, Write: t.Database.Passwords.Write, Read: t.Database.Passwords.Read,
		},
	}
	if err := backend.Ensure(ctx, t.Backend.URL, spec); err != nil {
		return 0, errors.Wrapf(err, "backend %s", t.Backend.Name)
	}
	// The versions run logged in as the owner role (never a superuser
	// session with SET ROLE, which blueprint DDL could RESET), each in its own
	// transaction, with the same progress marker as deployments.
	return applyTenant(ctx, ApplyConfig{}, TenantJob{
		BackendURL: t.Backend.URL,
		Database:   t.Database.Name,
		From:       t.Database.SchemaVersion,
		Versions:   t.Versions,
	})
}

func (r *Reconciler) drop(ctx context.Context, t Task) {
	sctx, cancel := context.WithTimeout(ctx, r.StepTimeout)
	defer cancel()
	if err := backend.Drop(sctx, t.Backend.URL, t.Database.Name); err != nil {
		r.Logf("reconciler: drop %s: %v", t.Database.Label(), err)
		return // retried at the next resync
	}
	if _, _, err := r.Propose.Apply(ctx, fsm.CmdRemoveDatabase, &fsm.RemoveDatabase{Name: t.Database.Name, At: time.Now().UTC()}); err != nil {
		r.Logf("reconciler: remove %s: %v", t.Database.Label(), err)
		return
	}
	r.mu.Lock()
	delete(r.guardRetry, t.Database.Name)
	r.mu.Unlock()
}
