package node

import (
	"context"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/actors"
	"tdb/fsm"
	"tdb/gossip"
	"tdb/httpapi"
)

// statusTimeout bounds asking the other nodes for their role and index.
const statusTimeout = time.Second

// clusterStatus lists the raft servers and any alive gossip member not (yet) in
// raft, with addresses and liveness from gossip, and each reachable node's
// own role and applied index (0 and "unknown" when it does not answer).
func (n *Node) clusterStatus(ctx context.Context) (httpapi.ClusterStatus, error) {
	_, leaderID := n.rep.Raft.LeaderWithID()
	st := httpapi.ClusterStatus{LeaderID: string(leaderID), NodeID: n.cfg.NodeID, AppliedIndex: n.rep.FSM.AppliedIndex(),
		LogVersion: n.activeLogVersion(), ClusterID: n.rep.ClusterID()}
	n.rep.FSM.View(func(s *fsm.State) {
		guard := actors.GuardFor(s)
		for _, d := range s.Databases {
			if actors.NeedsGuard(d, guard) {
				st.UnguardedDatabases++
			}
		}
	})
	cf := n.rep.Raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return st, errors.Wrap(err, "raft configuration")
	}
	members := map[string]gossip.Member{}
	if n.gossip != nil {
		for _, m := range n.gossip.Members() {
			members[m.ID] = m
		}
	}
	inRaft := map[string]bool{}
	for _, s := range cf.Configuration().Servers {
		inRaft[string(s.ID)] = true
		ns := httpapi.NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter, Role: "unknown"}
		if m, ok := members[ns.ID]; ok {
			ns.HTTPAddr, ns.WireAddr, ns.GossipAddr = m.HTTPAddr, m.WireAddr, m.GossipAddr
			ns.Alive = m.State == gossip.StateAlive
			ns.LogVersion = max(m.LogVersion, 1)
			ns.ClusterID = m.Cluster
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for _, m := range members {
		if !inRaft[m.ID] && m.State == gossip.StateAlive { // joining; reaped and departed members are not listed
			st.Nodes = append(st.Nodes, httpapi.NodeStatus{
				ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, WireAddr: m.WireAddr, GossipAddr: m.GossipAddr,
				Alive: m.State == gossip.StateAlive, Role: "unknown", LogVersion: max(m.LogVersion, 1), ClusterID: m.Cluster,
			})
		}
	}

	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range st.Nodes {
		ns := &st.Nodes[i]
		if ns.ID == n.cfg.NodeID {
			ns.Alive, ns.Role, ns.RaftIndex = true, stateName(n.rep.Raft.State()), n.rep.FSM.AppliedIndex()
			ns.LogVersion, ns.ClusterID = n.cfg.Cluster.LogVersion, st.ClusterID
			if n.gossip == nil {
				ns.HTTPAddr, ns.WireAddr = n.HTTPAddr(), n.BoundWireAddr()
			} else {
				ns.GossipAddr = n.gossip.Addr()
			}
			continue
		}
		if ns.ID == string(leaderID) {
			ns.Role = "leader"
		}
		if !ns.Alive || ns.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out statusResponse
			if err := n.call(ctx, peer{http: ns.HTTPAddr, raft: ns.RaftAddr}, "GET", "/internal/status", nil, &out); err == nil {
				ns.Role, ns.RaftIndex = out.Role, out.AppliedIndex
			}
		}()
	}
	wg.Wait()
	return st, nil
}
