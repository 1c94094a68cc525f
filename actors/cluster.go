package actors

import (
	"context"
	"time"

	"tdb/fsm"
	"tdb/wire/scram"
)

// ClusterHooks connect the proxy to the rest of the cluster. Each may be nil.
type ClusterHooks struct {
	// Admit is asked before every login; an error (with a SQLSTATE) refuses
	// it. A node cut off from the raft leader fails closed this way, so it
	// never accepts a key the majority has revoked. Running sessions go on.
	Admit func() error
	// CatchUp waits until the local FSM has applied everything the leader
	// had applied when it was asked. A login calls it once before failing on
	// a project, key or database this node may not have seen yet, so a key
	// created through another node works here as soon as its create call
	// has returned.
	CatchUp func(ctx context.Context) error
	// CatchUpTimeout bounds one CatchUp (default 2 s).
	CatchUpTimeout time.Duration
	// RouteCancel delivers a cancel request for a session this node does not
	// hold to the other nodes; the one holding it cancels, the rest ignore it.
	RouteCancel func(ctx context.Context, pid, secret uint32)
	// LeaderLost reports whether this node has lost contact with the raft
	// leader (as Admit refuses logins for): DDL in a tenant workspace is
	// refused then without asking the leader (leaderUnconfirmed).
	LeaderLost func() bool
}

// leaderUnconfirmed reports whether this node cannot confirm, now, that
// it is in touch with the raft leader: it has lost contact (LeaderLost),
// or it cannot catch up with the leader (CatchUp, bounded). DDL in a tenant
// workspace asks before it runs: it would commit in the workspace, and the
// blueprint version it makes could not be recorded. A lone node has no
// hooks, and leads.
func (p *Proxy) leaderUnconfirmed() bool {
	if p.cfg.Cluster.LeaderLost != nil && p.cfg.Cluster.LeaderLost() {
		return true
	}
	return p.cfg.Cluster.CatchUp != nil && p.runCatchUp(context.Background()) != nil
}

// admit runs the Admit hook.
func (p *Proxy) admit() error {
	if p.cfg.Cluster.Admit == nil {
		return nil
	}
	return p.cfg.Cluster.Admit()
}

// catchUp runs the CatchUp hook, bounded; it reports whether the local FSM
// may have changed (false when there is nothing to catch up with).
func (p *Proxy) catchUp(ctx context.Context) bool {
	if p.cfg.Cluster.CatchUp == nil {
		return false
	}
	_ = p.runCatchUp(ctx) // logged; the caller goes on with what it has
	return true
}

// runCatchUp runs the CatchUp hook (set) for at most CatchUpTimeout
// (default 2 s), and logs its failure.
func (p *Proxy) runCatchUp(ctx context.Context) error {
	d := p.cfg.Cluster.CatchUpTimeout
	if d <= 0 {
		d = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := p.cfg.Cluster.CatchUp(ctx)
	if err != nil {
		p.cfg.Logf("proxy: catch up with the leader: %v", err)
	}
	return err
}

// maxRoutedCancels bounds the cancel requests a node routes to the others
// at once. A key this node does not hold is tried on every other node, and
// a CancelRequest needs no login, so a flood of made-up keys would
// otherwise become calls between nodes without bound. PostgreSQL ignores a
// key it does not know; past the bound, so does the node.
const maxRoutedCancels = 64

// cancelRequest serves a client's CancelRequest: a session of this node is
// cancelled here, any other is routed to the other nodes, at most
// maxRoutedCancels at once.
func (p *Proxy) cancelRequest(ctx context.Context, pid, secret uint32) {
	if p.Cancel(ctx, pid, secret) {
		return
	}
	if p.cfg.Cluster.RouteCancel == nil {
		return
	}
	select {
	case p.routing <- struct{}{}:
		defer func() { <-p.routing }()
	default:
		if p.dropped.Add(1) == 1 {
			p.cfg.Logf("proxy: %d cancel requests for sessions of other nodes are being routed already: dropped one (a flood of made-up keys?)", maxRoutedCancels)
		}
		return
	}
	if n := p.dropped.Swap(0); n > 1 {
		p.cfg.Logf("proxy: dropped %d cancel requests for sessions of other nodes, with %d being routed", n, maxRoutedCancels)
	}
	p.cfg.Cluster.RouteCancel(ctx, pid, secret)
}

// projectKeys reads what SCRAM needs for a project: its salt and iterations,
// and its live keys with their verifiers. salt is nil for an unknown project.
func (p *Proxy) projectKeys(user string) (salt []byte, iterations int, keys []fsm.Key, candidates []scram.Verifier) {
	iterations = 4096
	p.cfg.FSM.View(func(s *fsm.State) {
		proj := s.Project(user)
		if proj == nil {
			return
		}
		salt, iterations = proj.Salt, proj.Iterations
		for _, k := range proj.LiveKeys() {
			keys = append(keys, *k)
			candidates = append(candidates, scram.Verifier{StoredKey: k.StoredKey, ServerKey: k.ServerKey})
		}
	})
	return salt, iterations, keys, candidates
}

// resolvable reports whether db resolves to a ready database for user here.
func (p *Proxy) resolvable(user, db string) bool {
	ok := false
	p.cfg.FSM.View(func(s *fsm.State) {
		t, found := s.Resolve(user, db)
		ok = found && t.Database != nil && t.Database.Status == fsm.StatusReady
	})
	return ok
}
