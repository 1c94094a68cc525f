package fsm

import (
	"github.com/cockroachdb/errors"
)

// SetClusterID names the cluster. A cluster's first leader proposes an ID
// it drew at random, once; the ID then never changes. Nodes tell it to
// each other (gossip, and raft's TLS handshake), so that a node that
// bootstrapped a cluster of its own (its data dir was emptied and it was
// started without --join) and the cluster it was part of refuse each
// other instead of one's log overwriting the other's. Response: the
// cluster's ID after it (the first one proposed wins).
type SetClusterID struct {
	ID string `json:"id"`
}

func init() {
	register(CmdSetClusterID, applySetClusterID)
}

func applySetClusterID(s *State, _ uint64, c *SetClusterID) (any, error) {
	if err := CheckClusterID(c.ID); err != nil {
		return nil, err
	}
	if s.ClusterID == "" {
		s.ClusterID = c.ID
	}
	return s.ClusterID, nil
}

// CheckClusterID refuses what is not a cluster ID: 16 to 64 lowercase
// hexadecimal digits.
func CheckClusterID(id string) error {
	if len(id) < 16 || len(id) > 64 {
		return errors.Newf("cluster id %q: want 16 to 64 hexadecimal digits", id)
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return errors.Newf("cluster id %q: want 16 to 64 lowercase hexadecimal digits", id)
		}
	}
	return nil
}

// ClusterID returns the cluster's ID, empty until it is set.
func (f *FSM) ClusterID() (id string) {
	f.View(func(s *State) { id = s.ClusterID })
	return id
}
