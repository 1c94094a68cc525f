package node

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors"
	"tdb/fsm"
	"tdb/httpapi"
	"tdb/metrics"
	"tdb/querylog"
)

// policyParts are the node's proxy policies: metrics, the query log, the
// auth-ban tracker and the connection counters (see actors/admit.go).
type policyParts struct {
	metrics  *metrics.Metrics
	queryLog *querylog.Log
	bans     *actors.BanTracker
	conns    *actors.Policies
}

// ParseCIDRs parses --proxy-protocol-from: comma-separated CIDRs or addresses.
func ParseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pfx.Masked())
			continue
		}
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return nil, errors.Newf("invalid CIDR or address %q in --proxy-protocol-from", s)
		}
		addr = addr.Unmap()
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return out, nil
}

// startPolicies builds the node's metrics, query log and ban tracker (run
// until ctx ends) and returns the proxy's policies.
func (n *Node) startPolicies(ctx context.Context) *actors.Policies {
	rep := n.rep
	m := metrics.New(metrics.Sources{
		RaftState:    func() string { return stateName(rep.Raft.State()) },
		AppliedIndex: rep.FSM.AppliedIndex,
		PoolSessions: func(state string) int {
			if n.proxy == nil {
				return 0
			}
			if state == "idle" {
				return n.proxy.PoolIdle()
			}
			return n.proxy.Sessions()
		},
		ActiveBans: func() int {
			k := 0
			rep.FSM.View(func(s *fsm.State) { k = len(s.Bans.Bans(time.Now())) })
			return k
		},
	})
	ql := querylog.New(n.cfg.QueryLogCapacity, n.cfg.LogOutput)
	ql.OnDrop = m.QueryLogDropped
	bans := actors.NewBanTracker(actors.BanTrackerConfig{
		NodeID: n.cfg.NodeID, Propose: n, Logf: n.logger.Printf, Metrics: m,
		Interval: n.cfg.BanBatchInterval,
		Batches:  func() bool { return n.activeLogVersion() >= 3 },
	})
	n.goRun(func() { bans.Run(ctx) })
	conns := actors.NewPolicies(actors.PolicyConfig{
		ProxyProtocolFrom: n.cfg.ProxyProtocolFrom, Bans: bans, QueryLog: ql, Metrics: m,
	})
	n.pol = &policyParts{metrics: m, queryLog: ql, bans: bans, conns: conns}
	return conns
}

// stopPolicies flushes the query log's writer.
func (n *Node) stopPolicies() {
	if n.pol != nil {
		n.pol.queryLog.Close()
	}
}

// observeApply records a raft apply's latency (deferred with its start).
func (n *Node) observeApply(start time.Time) {
	if n.pol != nil {
		n.pol.metrics.ObserveApply(start)
	}
}

// QueryLog is this node's query log (served by GET /v1/logs).
func (n *Node) QueryLog() *querylog.Log {
	if n.pol == nil {
		return nil
	}
	return n.pol.queryLog
}

// Metrics is this node's metrics (tests).
func (n *Node) Metrics() *metrics.Metrics {
	if n.pol == nil {
		return nil
	}
	return n.pol.metrics
}

// ClientIP is the address of an HTTP request's client: the peer's, or,
// when the peer is a load balancer listed in --proxy-protocol-from, the last
// address of the X-Forwarded-For header it adds (haproxy's forwardfor).
func (n *Node) ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if fwd := r.Header.Values("X-Forwarded-For"); actors.TrustedPeer(n.cfg.ProxyProtocolFrom, peer) && len(fwd) > 0 {
		last := fwd[len(fwd)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if a, ok := forwardedAddr(strings.TrimSpace(last)); ok {
			return a.Unmap().String()
		}
	}
	return peer.String()
}

// forwardedAddr reads one X-Forwarded-For entry: an address, or, as some
// balancers write it, an address with the client's port ("192.0.2.1:5123",
// "[2001:db8::1]:5123") or an IPv6 address in brackets. An IPv6 zone
// ("fe80::1%eth0") is dropped: the client is keyed by its address alone, as
// on the wire side, whose PROXY header carries none, and the zone's text
// is any the header's writer chose.
func forwardedAddr(v string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(v); err == nil {
		return a.WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().WithZone(""), true
	}
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		if a, err := netip.ParseAddr(v[1 : len(v)-1]); err == nil && a.Is6() {
			return a.WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// Banned reports whether ip is banned, for the HTTP API.
func (n *Node) Banned(ip string) (left int64, msg string, banned bool) { return n.proxy.Banned(ip) }

// AuthFailed counts a wrong HTTP API key from ip toward its ban.
func (n *Node) AuthFailed(ip string) { n.proxy.AuthFailed(ip) }

// AdmitQuery implements httpapi.QueryAdmitter.
func (n *Node) AdmitQuery(ip, database, wireName string, maxConnections int64) (func(), string) {
	return n.proxy.AdmitQuery(ip, database, wireName, maxConnections)
}

var (
	_ httpapi.AuthGuard = (*Node)(nil)
	_ httpapi.Healther  = (*Node)(nil)
)
