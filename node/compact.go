package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"tdb/fsm"
)

// Compaction defaults (Config.RevokedKeyRetention, CompactInterval,
// BanBatchRetention).
const (
	DefaultRevokedKeyRetention = 7 * 24 * time.Hour
	DefaultCompactInterval     = 10 * time.Minute
	DefaultBanBatchRetention   = 24 * time.Hour
)

// compactLoop runs on every node; while this node is the raft leader it
// proposes, every CompactInterval, the compaction of what the metadata
// would otherwise keep for good (fsm.CompactState): revoked keys past
// their retention, and the batch IDs of failed logins of nodes gone from
// the raft configuration. It proposes nothing before the cluster runs log
// version 7, nor when there is nothing to forget.
func (n *Node) compactLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.rep.IsLeader() {
			n.compact(ctx)
		}
	}
}

// compact proposes one compaction, if there is anything to forget.
func (n *Node) compact(ctx context.Context) {
	cf := n.rep.Raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	var cmd *fsm.CompactState
	n.rep.FSM.View(func(s *fsm.State) {
		if s.CheckProposable(fsm.CmdCompactState) != nil {
			return
		}
		cmd = planCompaction(s, cf.Configuration().Servers, time.Now().UTC(), n.cfg.RevokedKeyRetention, n.cfg.BanBatchRetention)
	})
	if cmd == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, n.cfg.Cluster.InternalTimeout)
	defer cancel()
	v, _, err := n.rep.Apply(actx, fsm.CmdCompactState, cmd)
	if err != nil {
		n.logger.Printf("compact: %v", err)
		return
	}
	if done, ok := v.(fsm.Compacted); ok && (done.Keys > 0 || done.BatchNodes > 0) {
		n.logger.Printf("compact: removed %d keys revoked before %s, forgot the failed-login batches of %d nodes gone from the cluster",
			done.Keys, cmd.KeysRevokedBefore.Format(time.RFC3339), done.BatchNodes)
	}
}

// planCompaction is the compaction the leader proposes at now, or nil when
// there is nothing to forget: the keys revoked keyRetention before now, and
// the batch IDs of the nodes outside servers whose last batch is
// batchRetention old (or has no time yet: the command gives it one).
func planCompaction(s *fsm.State, servers []raft.Server, now time.Time, keyRetention, batchRetention time.Duration) *fsm.CompactState {
	cmd := &fsm.CompactState{At: now, KeysRevokedBefore: now.Add(-keyRetention), BatchesBefore: now.Add(-batchRetention)}
	in := map[string]bool{}
	for _, sv := range servers {
		in[string(sv.ID)] = true
	}
	for _, b := range s.Bans.BatchNodes() {
		if !in[b.Node] && b.Last.Before(cmd.BatchesBefore) {
			cmd.BatchNodes = append(cmd.BatchNodes, b.Node)
		}
	}
	if s.RevokedBefore(cmd.KeysRevokedBefore) == 0 && len(cmd.BatchNodes) == 0 {
		return nil
	}
	return cmd
}
