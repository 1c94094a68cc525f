package fsm

import "time"

// CompactState forgets what the state would otherwise keep for the whole
// life of the cluster (log version 7): the records of keys revoked long
// ago, and the batch IDs of failed logins of nodes gone from the cluster.
// The leader proposes it from time to time (node/compact.go); what to
// forget is decided from the times in the command, so every replica
// forgets the same.
type CompactState struct {
	At time.Time `json:"at"` // the leader's clock
	// KeysRevokedBefore: the keys revoked before it are removed. Zero
	// removes none.
	KeysRevokedBefore time.Time `json:"keys_revoked_before,omitzero"`
	// BatchNodes are nodes, outside the raft configuration when the leader
	// proposed it, whose batch IDs are forgotten if the last batch they
	// sent was recorded before BatchesBefore. A node whose batches were
	// recorded before log version 7 (with no time) gets At as its time, and
	// is forgotten by a later compaction.
	BatchNodes    []string  `json:"batch_nodes,omitempty"`
	BatchesBefore time.Time `json:"batches_before,omitzero"`
}

// Compacted is CompactState's response: what it forgot.
type Compacted struct {
	Keys       int `json:"keys"`
	BatchNodes int `json:"batch_nodes"`
}

func init() {
	register(CmdCompactState, applyCompactState)
}

func applyCompactState(s *State, _ uint64, c *CompactState) (any, error) {
	var out Compacted
	if !c.KeysRevokedBefore.IsZero() {
		s.eachRevokedBefore(c.KeysRevokedBefore, func(p *Project, id string, k *Key) {
			delete(p.Keys, id)
			delete(s.byLookup, k.Lookup)
			out.Keys++
		})
	}
	for _, node := range c.BatchNodes {
		if s.Bans.forgetBatches(node, c.BatchesBefore, c.At) {
			out.BatchNodes++
		}
	}
	return out, nil
}

// RevokedBefore counts the keys revoked before t: those a CompactState
// with KeysRevokedBefore t removes.
func (s *State) RevokedBefore(t time.Time) int {
	n := 0
	s.eachRevokedBefore(t, func(*Project, string, *Key) { n++ })
	return n
}

// eachRevokedBefore calls fn with each key revoked before t, its project
// and its id there; fn may delete the key from its project.
func (s *State) eachRevokedBefore(t time.Time, fn func(p *Project, id string, k *Key)) {
	for _, p := range s.Projects {
		for id, k := range p.Keys {
			if k.RevokedAt != nil && k.RevokedAt.Before(t) {
				fn(p, id, k)
			}
		}
	}
}
