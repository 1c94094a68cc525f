package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/fsm"
	"tdb/gossip"
	"tdb/wire"
)

// ClusterConfig holds the membership and fail-closed timing knobs. Zero
// values mean the defaults.
type ClusterConfig struct {
	// ReconcileInterval is how often the leader compares the gossip members
	// with the raft configuration even without a gossip event (default 10 s).
	ReconcileInterval time.Duration
	// ReapTimeout is how long a failed member stays a raft voter before the
	// leader removes it (default 72 h), and a raft server the leader's
	// gossip has never heard of too. A member that leaves gracefully is
	// removed at once.
	ReapTimeout time.Duration
	// LeaderContactLimit: a node that has heard nothing from a leader for
	// longer refuses new logins (default 10 s).
	LeaderContactLimit time.Duration
	// CatchUpTimeout bounds a login's wait for this node to apply what the
	// leader had applied (default 2 s).
	CatchUpTimeout time.Duration
	// InternalTimeout bounds one node-to-node call (default 10 s).
	InternalTimeout time.Duration
	// LogVersion is the raft log version this node advertises (0: its
	// build's, fsm.LogVersion). Tests set an older one to stand for a node
	// of an older build.
	LogVersion uint16
	// Gossip carries gossip's timing knobs; addresses, meta, secret and
	// join list are filled in by Start.
	Gossip gossip.Config
}

func (c *ClusterConfig) setDefaults() {
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 10 * time.Second
	}
	if c.ReapTimeout <= 0 {
		c.ReapTimeout = 72 * time.Hour
	}
	if c.LeaderContactLimit <= 0 {
		c.LeaderContactLimit = 10 * time.Second
	}
	if c.CatchUpTimeout <= 0 {
		c.CatchUpTimeout = 2 * time.Second
	}
	if c.InternalTimeout <= 0 {
		c.InternalTimeout = 10 * time.Second
	}
	if c.LogVersion == 0 {
		c.LogVersion = fsm.LogVersion
	}
}

// ErrLostLeader is the login refusal of a node cut off from the leader.
var ErrLostLeader = wire.Fatalf("57P03", "this node has lost contact with the cluster leader; try another node")

// ErrCatchingUp refuses a login while a node that was cut off from the
// leader has not yet applied what it missed.
var ErrCatchingUp = wire.Fatalf("57P03", "this node is catching up with the cluster leader; try again shortly or try another node")

// DeriveClusterSecret derives the secret nodes use to authenticate each other
// (and encrypt gossip) from the operator's admin key, for clusters that set
// no --cluster-secret. Every node with the same admin key derives the same.
func DeriveClusterSecret(adminKey string) string {
	if adminKey == "" {
		return ""
	}
	return hex.EncodeToString(deriveKey(adminKey, "tdb cluster secret v1"))
}

// deriveKey derives the 32-byte key named label from secret (HMAC-SHA256):
// every node that holds the secret derives the same one.
func deriveKey(secret, label string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(label))
	return m.Sum(nil)
}

// gossipKey is the memberlist encryption key made from the cluster secret.
func gossipKey(secret string) []byte {
	if secret == "" {
		return nil
	}
	sum := sha256.Sum256([]byte("tdb gossip key v1\x00" + secret))
	return sum[:]
}

// startGossip joins the membership gossip, advertising this node's bound
// addresses. It is a no-op without a gossip address (a lone node).
func (n *Node) startGossip() error {
	if n.cfg.GossipAddr == "" {
		return nil
	}
	raftAddr := n.rep.Addr()
	raftHost, _, _ := net.SplitHostPort(raftAddr)
	gc := n.cfg.Cluster.Gossip
	gc.Meta = gossip.Meta{
		ID:       n.cfg.NodeID,
		RaftAddr: raftAddr,
		HTTPAddr: advertisable(n.httpLn.Addr().String(), raftHost),
		WireAddr: advertisable(n.wireLn.Addr().String(), raftHost), // this node's own; PublicWireAddr may be a load balancer

		LogVersion: n.cfg.Cluster.LogVersion,
	}
	gc.BindAddr = n.cfg.GossipAddr
	gc.SecretKey = gossipKey(n.secret)
	gc.Join = n.cfg.Join
	gc.PeersFile = filepath.Join(n.cfg.DataDir, "gossip-peers.json")
	gc.Logf = n.logger.Printf
	gc.ClusterID = n.rep.ClusterID
	if gc.ForgetAfter <= 0 {
		// Longer than a failed member is kept a raft voter: forgotten
		// sooner, it would be reaped ReapTimeout later than the docs say.
		gc.ForgetAfter = 2 * n.cfg.Cluster.ReapTimeout
	}
	g, err := gossip.Start(gc)
	if err != nil {
		return err
	}
	n.gossip = g
	return nil
}

// advertisable replaces an unspecified listen host (0.0.0.0, ::) with host,
// so other nodes can dial the address.
func advertisable(addr, host string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); (ip == nil || ip.IsUnspecified()) && host != "" {
		return net.JoinHostPort(host, p)
	}
	return addr
}

// membershipLoop runs on every node; while this node is the raft leader it
// turns the gossip membership into raft voters, on every gossip change, on
// gaining leadership, and on a timer.
func (n *Node) membershipLoop(ctx context.Context) {
	if n.gossip == nil {
		n.loneLogVersion(ctx)
		return
	}
	leaderCh := make(chan raft.Observation, 4)
	obs := raft.NewObserver(leaderCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.rep.Raft.RegisterObserver(obs)
	defer n.rep.Raft.DeregisterObserver(obs)
	t := time.NewTicker(n.cfg.Cluster.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.gossip.Changes():
		case <-leaderCh:
		}
		if n.keepClusterID() {
			n.gossip.Readvertise()
		}
		if n.rep.IsLeader() {
			n.reconcileMembers()
		}
	}
}

// leaderCaughtUp waits, once per term, until this leader's state has
// applied every entry of its log: a leader elected after a full restart
// holds only its last snapshot's state until its first entry of the term
// commits, and a log version read from it then could be an older one than
// the cluster runs, which would let a node of an older build become a
// voter.
func (n *Node) leaderCaughtUp(timeout time.Duration) error {
	term := n.rep.Raft.CurrentTerm()
	if term == n.caughtUpTerm {
		return nil
	}
	if err := n.rep.Raft.Barrier(timeout).Error(); err != nil {
		return err
	}
	n.caughtUpTerm = term
	return nil
}

// reconcileMembers makes alive members voters, removes members that left,
// and reaps members that have been failed for longer than ReapTimeout. Every
// step is idempotent; a failed step is retried on the next round.
func (n *Node) reconcileMembers() {
	cf := n.rep.Raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		n.logger.Printf("membership: raft configuration: %v", err)
		return
	}
	servers := map[raft.ServerID]raft.Server{}
	for _, s := range cf.Configuration().Servers {
		servers[s.ID] = s
	}
	if len(servers) > 1 {
		n.rep.identity.joined()
	}
	timeout := n.cfg.Cluster.InternalTimeout
	active := n.activeLogVersion()
	caughtUp := false
	changed := false // the configuration read above is out of date
	members := map[string]gossip.Member{}
	for _, m := range n.gossip.Members() {
		members[m.ID] = m
		id := raft.ServerID(m.ID)
		if m.ID == n.cfg.NodeID || m.RaftAddr == "" {
			continue
		}
		s, known := servers[id]
		// A node that says it belongs to a cluster is made a voter only of
		// that cluster: not of another, nor of a new one whose ID is still
		// pending (a node whose data dir was emptied bootstrapped it).
		if own := n.rep.identity.Own(); m.Cluster != "" && m.Cluster != own {
			// Its raft refuses ours and ours its (rafttls.go): leave it be.
			if c, logged := n.foreignCluster[m.ID]; !logged || c != m.Cluster {
				n.foreignCluster[m.ID] = m.Cluster
				n.logger.Printf("membership: %s at %s belongs to cluster %s, and this is cluster %s: not made a voter, nor removed. If this node's data dir was emptied and it was started without --join, it bootstrapped a cluster of its own: stop it, empty its data dir and start it with --join to the others; if the other node's was, do that to it", m.ID, m.RaftAddr, m.Cluster, orNone(own))
			}
			continue
		}
		delete(n.foreignCluster, m.ID)
		switch m.State {
		case gossip.StateAlive:
			if known && s.Suffrage == raft.Voter && string(s.Address) == m.RaftAddr {
				continue
			}
			// A server of the configuration at another address (the node
			// restarted on a new one, maybe on another build) is checked as a
			// new member is: AddVoter would give it the new address.
			if !caughtUp {
				// The version must be the cluster's, not that of a state
				// still catching up with the log (a full restart).
				if err := n.leaderCaughtUp(timeout); err != nil {
					n.logger.Printf("membership: wait for this leader's state to catch up with the log: %v", err)
					return
				}
				active, caughtUp = n.activeLogVersion(), true
			}
			if max(m.LogVersion, 1) < active {
				// It would stop at the first entry it cannot apply.
				if v, logged := n.refusedBuild[m.ID]; !logged || v != m.LogVersion {
					n.refusedBuild[m.ID] = m.LogVersion
					if known {
						n.logger.Printf("membership: %s at %s runs a build of raft log version %d and the cluster runs %d: its raft server stays at %s; upgrade it", m.ID, m.RaftAddr, max(m.LogVersion, 1), active, s.Address)
					} else {
						n.logger.Printf("membership: %s runs a build of raft log version %d and the cluster runs %d: not made a voter; upgrade it", m.ID, max(m.LogVersion, 1), active)
					}
				}
				continue
			}
			delete(n.refusedBuild, m.ID)
			if err := n.rep.Raft.AddVoter(id, raft.ServerAddress(m.RaftAddr), 0, timeout).Error(); err != nil {
				n.logger.Printf("membership: add voter %s at %s: %v", m.ID, m.RaftAddr, err)
				continue
			}
			changed = true
			n.logger.Printf("membership: %s at %s is a raft voter", m.ID, m.RaftAddr)
		case gossip.StateLeft, gossip.StateFailed:
			if !known {
				continue
			}
			if m.State == gossip.StateFailed && time.Since(m.Since) < n.cfg.Cluster.ReapTimeout {
				continue
			}
			if err := n.rep.Raft.RemoveServer(id, 0, timeout).Error(); err != nil {
				n.logger.Printf("membership: remove %s: %v", m.ID, err)
				continue
			}
			changed = true
			n.logger.Printf("membership: removed %s from raft (%s)", m.ID, m.State)
		}
	}
	// What was logged of members gossip no longer lists (it forgets those
	// gone long enough) is forgotten with them.
	for id := range n.refusedBuild {
		if _, ok := members[id]; !ok {
			delete(n.refusedBuild, id)
		}
	}
	for id := range n.foreignCluster {
		if _, ok := members[id]; !ok {
			delete(n.foreignCluster, id)
		}
	}
	if n.reapUnheard(servers, members) {
		changed = true
	}
	if !changed { // else next round, with the servers just added counted
		n.raiseLogVersion(cf.Configuration().Servers, members, active)
	}
}

// reapUnheard removes the raft servers this node's gossip has never heard
// of for ReapTimeout, as reconcileMembers reaps failed members: a node that
// died while another led, and that gossip forgot before this node started,
// appears in no member table, yet would count towards every quorum for
// good. It reports whether it removed one.
func (n *Node) reapUnheard(servers map[raft.ServerID]raft.Server, members map[string]gossip.Member) bool {
	for id := range n.unheardSince {
		if _, ok := servers[id]; !ok {
			delete(n.unheardSince, id)
		}
	}
	removed := false
	for id, s := range servers {
		if _, heard := members[string(id)]; heard || string(id) == n.cfg.NodeID {
			delete(n.unheardSince, id)
			continue
		}
		since, ok := n.unheardSince[id]
		if !ok {
			n.unheardSince[id] = time.Now()
			n.logger.Printf("membership: raft server %s at %s is unknown to gossip: removed from raft if still unknown in %s", id, s.Address, n.cfg.Cluster.ReapTimeout)
			continue
		}
		if time.Since(since) < n.cfg.Cluster.ReapTimeout {
			continue
		}
		if err := n.rep.Raft.RemoveServer(id, 0, n.cfg.Cluster.InternalTimeout).Error(); err != nil {
			n.logger.Printf("membership: remove %s: %v", id, err)
			continue
		}
		delete(n.unheardSince, id)
		removed = true
		n.logger.Printf("membership: removed %s from raft (unknown to gossip for %s)", id, n.cfg.Cluster.ReapTimeout)
	}
	return removed
}

// orNone names a cluster ID, or its absence.
func orNone(id string) string {
	if id == "" {
		return "(none yet)"
	}
	return id
}

// keepClusterID writes the cluster's ID to the raft dir once the state has
// it, and, on the leader, proposes it first when the state has none. It
// reports whether the ID this node advertises changed.
func (n *Node) keepClusterID() bool {
	if n.rep.IsLeader() && n.rep.FSM.ClusterID() == "" {
		var err error
		n.rep.FSM.View(func(s *fsm.State) { err = s.CheckProposable(fsm.CmdSetClusterID) })
		if err == nil {
			n.proposeClusterID()
		}
	}
	changed, err := n.rep.identity.persist()
	if err != nil {
		n.logger.Printf("membership: %v", err)
	}
	if changed {
		// Connections this node opened before the ID was committed offered
		// none: the next ones offer it, and their peers check it.
		n.rep.transport.CloseStreams()
	}
	return changed
}

// proposeClusterID commits the cluster's ID (leader only): the one this
// node has pending (it bootstrapped the cluster), else a new one (a
// cluster bootstrapped by a build from before IDs; another node's pending
// one is then replaced by it).
func (n *Node) proposeClusterID() {
	id := n.rep.identity.Local()
	if id == "" {
		var err error
		if id, err = newClusterID(); err != nil {
			n.logger.Printf("membership: %v", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Cluster.InternalTimeout)
	defer cancel()
	if _, _, err := n.rep.Apply(ctx, fsm.CmdSetClusterID, &fsm.SetClusterID{ID: id}); err != nil {
		n.logger.Printf("membership: record the cluster id: %v", err)
	}
}

// activeLogVersion is the raft log version the cluster runs.
func (n *Node) activeLogVersion() (v uint16) {
	n.rep.FSM.View(func(s *fsm.State) { v = s.ActiveLogVersion() })
	return v
}

// raiseLogVersion raises the cluster's log version (leader only) to the
// newest one every raft server's build applies, as their gossip says: the
// last step of a rolling upgrade. A server whose version is not known (not
// heard from, or a build from before log versions) holds it back.
func (n *Node) raiseLogVersion(servers []raft.Server, members map[string]gossip.Member, active uint16) {
	target, unknown := logVersionTarget(n.cfg.NodeID, n.cfg.Cluster.LogVersion, servers, members)
	if unknown != "" {
		if n.versionHeldBy != unknown && n.cfg.Cluster.LogVersion > active {
			n.versionHeldBy = unknown
			n.logger.Printf("membership: raft server %s advertises no log version (a build from before them, or not heard from): the cluster stays at log version %d", unknown, active)
		}
		return
	}
	n.versionHeldBy = ""
	if target <= active {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Cluster.InternalTimeout)
	defer cancel()
	if _, _, err := n.rep.Apply(ctx, fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: target}); err != nil {
		n.logger.Printf("membership: raise the raft log version to %d: %v", target, err)
		return
	}
	n.logger.Printf("membership: every node applies raft log version %d: the cluster runs it", target)
}

// logVersionTarget is the newest log version every raft server applies:
// self's own and what the others advertise. unknown names a server whose
// version is not known (then v means nothing).
func logVersionTarget(self string, own uint16, servers []raft.Server, members map[string]gossip.Member) (v uint16, unknown string) {
	v = own
	for _, s := range servers {
		if string(s.ID) == self {
			continue
		}
		m, known := members[string(s.ID)]
		if !known || m.LogVersion == 0 {
			return 0, string(s.ID)
		}
		v = min(v, m.LogVersion)
	}
	return v, ""
}

// loneLogVersion raises the log version of a node without gossip, the only
// server of its cluster, once it leads.
func (n *Node) loneLogVersion(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if n.rep.IsLeader() {
			cf := n.rep.Raft.GetConfiguration()
			if cf.Error() == nil && len(cf.Configuration().Servers) != 1 {
				return
			}
			if cf.Error() == nil {
				n.raiseLogVersion(cf.Configuration().Servers, nil, n.activeLogVersion())
			}
			if n.activeLogVersion() >= n.cfg.Cluster.LogVersion {
				n.keepClusterID()
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Leave removes this node from the cluster for good: a leader hands its
// leadership over first, then the node announces its leave through gossip
// and the leader removes it from raft. Stop it afterwards.
func (n *Node) Leave(ctx context.Context) error {
	if n.gossip == nil {
		return errors.New("leave: this node runs without gossip")
	}
	if n.rep.IsLeader() {
		if err := n.rep.Raft.LeadershipTransfer().Error(); err != nil {
			return errors.Wrap(err, "leave: transfer leadership")
		}
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return n.gossip.Leave(timeout)
}

// admitLogin fails closed: a node that has heard nothing from a leader for
// longer than LeaderContactLimit refuses new logins. Every other login first
// catches up with the leader (a read index): contact alone does not mean
// this node has applied, say, the revocation of the key in use — a follower
// lags by a commit round when healthy and by a whole partition when cut off
// from raft but not from the leader's HTTP, and a leader may have been
// deposed (paused, partitioned) without knowing yet. The chaos harness
// found each of these (chaos/).
func (n *Node) admitLogin() error {
	if chaosBreak == "stale-login" {
		return nil
	}
	if n.lostLeader() {
		return ErrLostLeader
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Cluster.CatchUpTimeout)
	defer cancel()
	if err := n.catchUp(ctx); err != nil {
		n.logger.Printf("login: catch up with the leader: %v", err)
		return ErrCatchingUp
	}
	return nil
}

// lostLeader reports whether this follower's last contact with a leader is
// older than LeaderContactLimit (counting from its start when it has had
// none).
func (n *Node) lostLeader() bool {
	if n.rep.IsLeader() {
		return false
	}
	last := n.rep.Raft.LastContact()
	if last.IsZero() || last.Before(n.startedAt) {
		last = n.startedAt
	}
	return time.Since(last) > n.cfg.Cluster.LeaderContactLimit
}

// catchUp waits until this node has applied everything the leader had
// acknowledged when asked (read-your-writes across nodes). On the leader it
// confirms the leadership first.
func (n *Node) catchUp(ctx context.Context) error {
	if n.gossip == nil {
		return nil
	}
	return n.Sync(ctx)
}

// Sync implements httpapi.Syncer (a metadata backup): it waits until this
// node has applied every write acknowledged before the call, as catchUp,
// also on a lone node without gossip, whose leadership it confirms.
func (n *Node) Sync(ctx context.Context) error {
	if n.rep.IsLeader() {
		index, err := n.readIndex()
		if err != nil {
			return err
		}
		return errors.Wrapf(n.rep.FSM.WaitIndex(ctx, index), "wait for raft index %d", index)
	}
	var out indexResponse
	if err := n.callLeader(ctx, "GET", "/internal/index", nil, &out); err != nil {
		return err
	}
	return errors.Wrapf(n.rep.FSM.WaitIndex(ctx, out.Index), "wait for raft index %d", out.Index)
}

// alivePeers are the other members gossip sees alive.
func (n *Node) alivePeers() []gossip.Member {
	var out []gossip.Member
	for _, m := range n.gossip.Members() {
		if m.ID != n.cfg.NodeID && m.State == gossip.StateAlive {
			out = append(out, m)
		}
	}
	return out
}

// routeCancel passes a cancel request this node does not hold to the other
// alive nodes; the one holding the session cancels it.
func (n *Node) routeCancel(ctx context.Context, pid, secret uint32) {
	if n.gossip == nil {
		return
	}
	for _, m := range n.alivePeers() {
		err := n.call(ctx, memberPeer(m), "POST", "/internal/cancel", cancelRequest{PID: pid, Secret: secret}, nil)
		if err != nil {
			n.logger.Printf("cancel: route to %s: %v", m.ID, err)
		}
	}
}

// stopGossip leaves nothing behind: the others see this node fail (a
// restart is the common case; Leave is the way out for good).
func (n *Node) stopGossip() {
	if n.gossip != nil {
		if err := n.gossip.Shutdown(); err != nil {
			n.logger.Printf("gossip: %v", err)
		}
	}
}

// loneServer reports whether the raft configuration holds at most this node:
// a fresh single-node cluster must find itself leader at start.
func (n *Node) loneServer() bool {
	cf := n.rep.Raft.GetConfiguration()
	return cf.Error() != nil || len(cf.Configuration().Servers) <= 1
}

// GossipAddr is the address other nodes join this one at ("" without gossip).
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.Addr()
}

// fakeSaltSecret seeds the fake SCRAM salts the proxy shows for project IDs
// that do not exist. A real project's salt is in the replicated state: the
// same on every node and after a restart. A fake one must be too, or asking
// two nodes (or one node before and after a restart) for the same ID would
// tell whether it exists. Nodes that share a cluster secret derive the same
// seed from it; a node without one keeps a seed in its data directory.
func fakeSaltSecret(secret, dataDir string) ([]byte, error) {
	if secret != "" {
		return deriveKey(secret, "tdb fake scram salt v1"), nil
	}
	path := filepath.Join(dataDir, "fake-salt.key")
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, errors.Wrap(err, "read the fake salt seed")
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, errors.Wrap(err, "draw a fake salt seed")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, errors.Wrap(err, "write the fake salt seed")
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, errors.Wrap(err, "write the fake salt seed")
	}
	return b, nil
}
