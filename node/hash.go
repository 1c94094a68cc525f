package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"

	"tdb/fsm"
)

// hashResponse is a node's digest of its replicated state, for the chaos
// harness and tests to find divergence: equal applied indexes with unequal
// hashes mean the replicas diverged.
type hashResponse struct {
	ID           string `json:"id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`      // the whole FSM state
	BansHash     string `json:"bans_hash"` // the auth-ban table alone
	Bans         int    `json:"bans"`      // IPs the ban table remembers
}

// handleHash answers GET /internal/hash (read-only). The applied index is
// read before and after hashing and the hash retried until both agree, so
// hash and index describe the same state.
func (n *Node) handleHash(w http.ResponseWriter, _ *http.Request) {
	for {
		before := n.rep.FSM.AppliedIndex()
		hash, err := n.rep.FSM.Hash()
		if err != nil {
			writeInternal(w, http.StatusInternalServerError, &internalError{Code: "internal", Message: err.Error()})
			return
		}
		var bans []byte
		count := 0
		n.rep.FSM.View(func(s *fsm.State) { bans, err = json.Marshal(s.Bans); count = s.Bans.Len() })
		if err != nil {
			writeInternal(w, http.StatusInternalServerError, &internalError{Code: "internal", Message: err.Error()})
			return
		}
		if n.rep.FSM.AppliedIndex() != before {
			continue
		}
		sum := sha256.Sum256(bans)
		writeInternal(w, http.StatusOK, hashResponse{
			ID: n.cfg.NodeID, AppliedIndex: before, Hash: hash, BansHash: hex.EncodeToString(sum[:]), Bans: count,
		})
		return
	}
}

// chaosBreak is a deliberate bug for the chaos harness's own test
// (chaos/broken_test.go), off unless TDB_CHAOS_BREAK is set:
// "stale-login" admits logins from this node's possibly stale FSM, skipping
// the fail-closed and catch-up checks of admitLogin. Never set it otherwise.
var chaosBreak = os.Getenv("TDB_CHAOS_BREAK")
