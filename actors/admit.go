package actors

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"

	"tdb/fsm"
	"tdb/metrics"
	"tdb/querylog"
	"tdb/wire"
)

// PolicyConfig configures a node's connection policies: the PROXY protocol,
// per-IP and per-database connection limits, the auth-ban tracker, the query
// log and metrics. Limit values come from the FSM.
type PolicyConfig struct {
	// ProxyProtocolFrom lists the peers (load balancers) that must open every
	// connection with a PROXY v1/v2 header; any other peer must not send one.
	// Empty: the PROXY protocol is off and the TCP peer is the client.
	ProxyProtocolFrom []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a PROXY header (default 5 s).
	ProxyHeaderTimeout time.Duration
	Bans               *BanTracker      // receives failed logins; nil: not reported
	QueryLog           *querylog.Log    // nil: no query log
	Metrics            *metrics.Metrics // nil: no metrics
}

// Policies holds a node's connection policies and their live counters: client
// connections per IP and per physical database. The limits are cluster-wide:
// a node counts its own connections and adds the last counts its peers
// reported (SetPeerCounts), so the sum is as fresh as the peers' reports
// (the node shares them every half second). With a nil *Policies the proxy
// still refuses banned IPs and enforces the per-statement limits, but counts
// no connections, reports no failed logins and logs nothing.
type Policies struct {
	cfg PolicyConfig

	mu    sync.Mutex
	local ConnCounts            // this node's own connections
	peers map[string]ConnCounts // node id → its last report
	fails map[string]*localFail // this node's own failed logins by IP (localbans.go)
	// failsSwept is when fails was last swept of what is over
	failsSwept time.Time
}

// ConnCounts are one node's live client connections by IP and by physical
// database, as it reports them to its peers.
type ConnCounts struct {
	PerIP map[string]int64 `json:"per_ip"`
	PerDB map[string]int64 `json:"per_db"`
}

// MaxReportedIPs bounds a node's report to its peers: the IPs with the most
// connections, so a flood of distinct addresses cannot make reports grow
// without bound (IPs left out have few connections each).
const MaxReportedIPs = 10000

// NewPolicies returns a node's policies.
func NewPolicies(cfg PolicyConfig) *Policies {
	if cfg.ProxyHeaderTimeout <= 0 {
		cfg.ProxyHeaderTimeout = 5 * time.Second
	}
	return &Policies{cfg: cfg, local: ConnCounts{PerIP: map[string]int64{}, PerDB: map[string]int64{}}, peers: map[string]ConnCounts{}}
}

func (p *Policies) metrics() *metrics.Metrics {
	if p == nil {
		return nil
	}
	return p.cfg.Metrics
}

func (p *Policies) queryLog() *querylog.Log {
	if p == nil {
		return nil
	}
	return p.cfg.QueryLog
}

// Counts returns the live connections of an IP and of a physical database on
// this node (tests, diagnostics).
func (p *Policies) Counts(ip, database string) (perIP, perDB int64) {
	if p == nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.local.PerIP[ip], p.local.PerDB[database]
}

// Snapshot returns this node's counts for its peers.
func (p *Policies) Snapshot() ConnCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := ConnCounts{PerIP: maps.Clone(p.local.PerIP), PerDB: maps.Clone(p.local.PerDB)}
	if len(c.PerIP) > MaxReportedIPs {
		ips := slices.SortedFunc(maps.Keys(c.PerIP), func(a, b string) int { return cmp.Compare(c.PerIP[b], c.PerIP[a]) })
		for _, ip := range ips[MaxReportedIPs:] {
			delete(c.PerIP, ip)
		}
	}
	return c
}

// SetPeerCounts records a peer's last report; nil forgets the peer (it left,
// or has not reported for too long).
func (p *Policies) SetPeerCounts(node string, c *ConnCounts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c == nil {
		delete(p.peers, node)
		return
	}
	p.peers[node] = *c
}

// A counter picks one of a node's counts: by IP or by database.
type counter func(ConnCounts) map[string]int64

func countIP(c ConnCounts) map[string]int64 { return c.PerIP }
func countDB(c ConnCounts) map[string]int64 { return c.PerDB }

// acquire takes one slot of key unless limit (> 0) slots are taken on this
// node and, as last reported, on its peers.
func (p *Policies) acquire(count counter, key string, limit int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := count(p.local)
	if limit > 0 {
		n := m[key]
		for _, c := range p.peers {
			n += count(c)[key]
		}
		if n >= limit {
			return false
		}
	}
	m[key]++
	return true
}

func (p *Policies) release(count counter, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := count(p.local)
	if m[key]--; m[key] <= 0 {
		delete(m, key)
	}
}

// admission is what the proxy decided about a connection when it was
// accepted, before the startup phase: the client's real IP, and whether it
// is banned or over its IP's connection limit. A rejection is delivered after
// the startup phase, as an ErrorResponse the client's driver can show.
type admission struct {
	p      *Proxy
	conn   net.Conn // the client connection (PROXY header consumed)
	ip     string
	banned time.Time // end of the IP's ban, if banned
	set    fsm.ClusterSettings
	reject error  // other rejection
	holdIP bool   // holds a slot of its IP
	holdDB string // holds a slot of this physical database
	state  string // metrics state
}

// admitConn resolves a new connection's client IP (reading a PROXY header from a
// trusted load balancer) and checks the IP's ban and connection limit. It
// returns nil when the connection must simply be closed (a PROXY header where
// none is allowed, or none where one is required).
func (p *Proxy) admitConn(raw net.Conn) *admission {
	pol := p.cfg.Policy
	m := pol.metrics()
	a := &admission{p: p, conn: raw}
	if pol != nil && len(pol.cfg.ProxyProtocolFrom) > 0 {
		conn, err := readProxyHeader(raw, pol.cfg.ProxyProtocolFrom, pol.cfg.ProxyHeaderTimeout)
		if err != nil {
			p.cfg.Logf("proxy: %v", err)
			m.Rejected("proxy_protocol")
			_ = raw.SetWriteDeadline(time.Now().Add(time.Second))
			_ = wire.WriteError(raw, err)
			return nil
		}
		a.conn = conn
	}
	a.ip = clientIP(a.conn.RemoteAddr())
	a.state = metrics.StateStartup
	m.ConnState("", a.state)

	var set fsm.ClusterSettings
	p.cfg.FSM.View(func(s *fsm.State) {
		set = s.Settings
		a.banned, _ = s.BannedUntil(a.ip, p.cfg.Now())
	})
	a.set = set
	if a.banned.IsZero() {
		a.banned = pol.localBan(a.ip, p.cfg.Now())
	}
	switch {
	case !a.banned.IsZero():
		m.Rejected("banned")
	case pol != nil && !pol.acquire(countIP, a.ip, set.MaxConnsPerIP):
		m.Rejected("max_conns_per_ip")
		a.reject = wire.Fatalf(wire.CodeTooManyConnections,
			"connection rejected: too many connections from your IP (max_conns_per_ip %d)", set.MaxConnsPerIP)
	default:
		a.holdIP = pol != nil
	}
	return a
}

// rejection is the error to send after the startup phase, if any. A ban's
// remaining seconds are counted now, on this node's clock, rounded up.
func (a *admission) rejection() error {
	if a.banned.IsZero() {
		return a.reject
	}
	_, msg := banMessage(a.banned, a.p.cfg.Now())
	return wire.Fatalf(wire.CodeTooManyConnections, "%s", msg)
}

// banMessage is what a client banned until until is told at now, and the
// seconds it names: rounded up, never 0.
func banMessage(until, now time.Time) (left int64, msg string) {
	left = max(1, int64(math.Ceil(until.Sub(now).Seconds())))
	return left, fmt.Sprintf("connection rejected: your IP is temporarily rate-limited after repeated failed auth attempts, retry in %ds", left)
}

// authFailed reports a failed login: only a wrong password (28P01) counts,
// not a client that went away or spoke the protocol wrong.
func (a *admission) authFailed(err error) {
	if wire.CodeOf(err) != wire.CodeInvalidPassword {
		return
	}
	a.p.countAuthFailure(a.ip, a.set)
}

// bannedNow checks the IP's ban again, as the cluster and this node know it
// now (just before a password proof is verified): a ban decided while the
// client was logging in stops it guessing. It returns the rejection, or nil.
func (a *admission) bannedNow() error {
	a.banned = a.p.bannedUntil(a.ip)
	if a.banned.IsZero() {
		return nil
	}
	a.p.cfg.Policy.metrics().Rejected("banned")
	return a.rejection()
}

// admitDatabase takes a slot of the login's physical database under the
// workspace's max_connections, counted across the cluster.
func (a *admission) admitDatabase(lg *login) error {
	pol := a.p.cfg.Policy
	if pol == nil {
		return nil
	}
	limit := lg.workspace.Settings.MaxConnections
	if !pol.acquire(countDB, lg.target.Name, limit) {
		pol.metrics().Rejected("max_connections")
		return wire.Fatalf(wire.CodeTooManyConnections, "too many connections for database %q (max_connections %d)", lg.database, limit)
	}
	a.holdDB = lg.target.Name
	return nil
}

// relay runs the session's relay with its limits and query log.
func (a *admission) relay(ctx context.Context, s *session, then func()) {
	startGovernor(s, a.ip)
	a.p.cfg.Policy.metrics().ConnState(a.state, metrics.StateActive)
	a.state = metrics.StateActive
	s.relay(ctx, func() {
		s.gov.end()
		then()
	})
}

// done releases what the connection held.
func (a *admission) done() {
	pol := a.p.cfg.Policy
	pol.metrics().ConnState(a.state, "")
	if a.holdIP {
		pol.release(countIP, a.ip)
	}
	if a.holdDB != "" {
		pol.release(countDB, a.holdDB)
	}
}

// readProxyHeader reads the PROXY header a trusted peer must send, or makes
// sure an untrusted peer sent none. The returned connection reports the
// client's address as its RemoteAddr.
func readProxyHeader(raw net.Conn, trusted []netip.Prefix, timeout time.Duration) (net.Conn, error) {
	peer := addrOf(raw.RemoteAddr())
	policy := proxyproto.REJECT
	if TrustedPeer(trusted, peer) {
		policy = proxyproto.REQUIRE
	}
	pc := proxyproto.NewConn(raw, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(timeout))
	if _, err := pc.Read(nil); err != nil { // runs header detection
		if policy == proxyproto.REQUIRE {
			return nil, wire.Fatalf(wire.CodeProtocolViolation, "a PROXY protocol header is required from %s: %v", peer, err)
		}
		return nil, wire.Fatalf(wire.CodeProtocolViolation, "PROXY protocol header not accepted from %s", peer)
	}
	return pc, nil
}

// TrustedPeer reports whether peer is one of the load balancers trusted
// (--proxy-protocol-from) to name the client it forwards.
func TrustedPeer(trusted []netip.Prefix, peer netip.Addr) bool {
	return peer.IsValid() && slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(peer) })
}

// addrOf is the IP of a TCP address (zero for other kinds).
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// clientIP is the canonical text of a client's IP ("local" for a Unix socket).
func clientIP(a net.Addr) string {
	if ip := addrOf(a); ip.IsValid() {
		return ip.String()
	}
	return "local"
}
