package fsm

import "time"

// RecordAuthFailures reports a batch of failed wire authentications, counted
// per client IP by one node's ban tracker. At is the proposer's clock; the
// FSM decides bans from the counts, the cluster settings and At alone. The
// response is the []Ban decided.
type RecordAuthFailures struct {
	At       time.Time     `json:"at"`
	Node     string        `json:"node,omitempty"`
	Failures []AuthFailure `json:"failures"`
	// Batch names the batch: one proposed again because the outcome of its
	// first proposal was unknown counts once. Taken from log version 3
	// (builds before it would count it again); trackers send it from then.
	Batch string `json:"batch,omitempty"`
}

func init() {
	register(CmdRecordAuthFailures, applyRecordAuthFailures)
}

func applyRecordAuthFailures(s *State, _ uint64, c *RecordAuthFailures) (any, error) {
	if c.Batch != "" && s.ActiveLogVersion() >= 3 {
		if s.Bans.seenBatch(c.Node, c.Batch) {
			return []Ban(nil), nil
		}
		if s.ActiveLogVersion() >= 7 {
			s.Bans.noteBatch(c.Node, c.At)
		}
	}
	return s.Bans.record(c.At, c.Failures, s.Settings), nil
}

// BannedUntil returns when the ban of ip ends, if ip is banned at now.
func (s *State) BannedUntil(ip string, now time.Time) (time.Time, bool) {
	r, ok := s.Bans.Lookup(ip)
	if !ok || !r.Banned(now) {
		return time.Time{}, false
	}
	return r.BannedUntil, true
}
