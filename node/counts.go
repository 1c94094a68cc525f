package node

import (
	"context"
	"net/http"
	"sync"
	"time"

	"tdb/actors"
)

// Connection limits (max_connections per database, max_conns_per_ip) are
// cluster-wide. Each node serves its own live counts at /internal/counts
// and polls its alive peers' every countsInterval; admission adds the peers'
// last counts to its own. A peer that has not answered for countsStale is
// left out (it is down or cut off, and so are its clients). Between two
// reports each node admits against its peers' last counts, so nodes that
// admit at once may each take the same free slots: a burst spread over n
// nodes can pass a limit by up to n-1 times the slots free at the last
// report. What was admitted stays; later logins are refused until the
// total is back under the limit.
const (
	countsInterval = 500 * time.Millisecond
	countsStale    = 3 * time.Second
)

func (n *Node) handleCounts(w http.ResponseWriter, _ *http.Request) {
	writeInternal(w, http.StatusOK, n.pol.conns.Snapshot())
}

// shareCounts polls the peers' counts until ctx ends.
func (n *Node) shareCounts(ctx context.Context) {
	if n.gossip == nil || n.pol == nil {
		return
	}
	var mu sync.Mutex
	last := map[string]time.Time{} // peer → its last answer
	tick := time.NewTicker(countsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var wg sync.WaitGroup
		alive := map[string]bool{}
		for _, m := range n.alivePeers() {
			alive[m.ID] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, countsInterval)
				defer cancel()
				var c actors.ConnCounts
				if err := n.call(cctx, memberPeer(m), "GET", "/internal/counts", nil, &c); err != nil {
					return
				}
				n.pol.conns.SetPeerCounts(m.ID, &c)
				mu.Lock()
				last[m.ID] = time.Now()
				mu.Unlock()
			}()
		}
		wg.Wait()
		for id, at := range last {
			if !alive[id] || time.Since(at) > countsStale {
				n.pol.conns.SetPeerCounts(id, nil)
				delete(last, id)
			}
		}
	}
}
