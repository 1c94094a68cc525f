package actors

import (
	"fmt"
	"sync"
	"time"

	"tdb/fsm"
)

// The cluster decides bans in the FSM, from failures each node proposes in
// batches (BanTracker): a ban takes a batch interval and a raft round trip
// to appear, and a client guessing passwords fast, or on many connections at
// once, would get that many more guesses. So each node also counts the
// failures it sees itself, with the cluster's threshold and window, and bans
// an IP on its own the moment they reach the threshold, for the base ban
// length, until the cluster's ban (which may be longer) takes over. The
// check runs at accept and again just before a password proof is verified.

// maxLocalFailIPs bounds the IPs a node counts failures of itself.
const maxLocalFailIPs = 10_000

// localFail is a node's own count of an IP's failed logins.
type localFail struct {
	count       int64
	start       time.Time // of the current window
	bannedUntil time.Time
}

// localBan returns when this node's own ban of ip ends, or zero.
func (p *Policies) localBan(ip string, now time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.fails[ip]; f != nil && now.Before(f.bannedUntil) {
		return f.bannedUntil
	}
	return time.Time{}
}

// localFailed counts a failed login from ip and reports when this node now
// bans it (zero: not banned).
func (p *Policies) localFailed(ip string, now time.Time, set fsm.ClusterSettings) time.Time {
	if p == nil || set.AuthFailThreshold <= 0 {
		return time.Time{}
	}
	window := time.Duration(set.AuthFailWindowSec) * time.Second
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fails[ip]
	if f == nil {
		if len(p.fails) >= maxLocalFailIPs {
			if now.Sub(p.failsSwept) >= time.Second { // a flood of new IPs sweeps once a second
				p.failsSwept = now
				p.forgetFails(now, window)
			}
			if len(p.fails) >= maxLocalFailIPs {
				return time.Time{} // the cluster's count still holds
			}
		}
		if p.fails == nil {
			p.fails = map[string]*localFail{}
		}
		f = &localFail{start: now}
		p.fails[ip] = f
	}
	if now.Before(f.bannedUntil) {
		return f.bannedUntil
	}
	if now.Sub(f.start) >= window {
		f.count, f.start = 0, now
	}
	f.count++
	if f.count < set.AuthFailThreshold {
		return time.Time{}
	}
	f.count, f.start = 0, now
	f.bannedUntil = now.Add(time.Duration(set.BanSec) * time.Second)
	return f.bannedUntil
}

// forgetFails drops the counts whose window and ban are over (under p.mu).
func (p *Policies) forgetFails(now time.Time, window time.Duration) {
	for ip, f := range p.fails {
		if now.Sub(f.start) >= window && !now.Before(f.bannedUntil) {
			delete(p.fails, ip)
		}
	}
}

// bannedUntil returns when ip's ban ends, as the cluster and this node
// know it now; zero when it is not banned.
func (p *Proxy) bannedUntil(ip string) time.Time {
	now := p.cfg.Now()
	var until time.Time
	p.cfg.FSM.View(func(s *fsm.State) { until, _ = s.BannedUntil(ip, now) })
	if until.IsZero() {
		until = p.cfg.Policy.localBan(ip, now)
	}
	return until
}

// Banned reports whether ip is banned, with the seconds left and the text
// a banned client gets on the wire: the HTTP API refuses it alike.
func (p *Proxy) Banned(ip string) (left int64, msg string, banned bool) {
	until := p.bannedUntil(ip)
	if until.IsZero() {
		return 0, "", false
	}
	left, msg = banMessage(until, p.cfg.Now())
	return left, msg, true
}

// AuthFailed counts a failed authentication from ip outside the wire
// proxy (a wrong HTTP API key) as a wrong password is counted.
func (p *Proxy) AuthFailed(ip string) {
	var set fsm.ClusterSettings
	p.cfg.FSM.View(func(s *fsm.State) { set = s.Settings })
	p.countAuthFailure(ip, set)
}

// countAuthFailure counts a failed authentication from ip toward the
// cluster's ban of the IP and this node's own, under the settings set.
func (p *Proxy) countAuthFailure(ip string, set fsm.ClusterSettings) {
	pol := p.cfg.Policy
	pol.metrics().AuthFailed()
	if pol != nil && pol.cfg.Bans != nil {
		pol.cfg.Bans.Fail(ip)
	}
	pol.localFailed(ip, p.cfg.Now(), set)
}

// AdmitQuery takes a connection slot of ip and of a physical database, as
// a wire connection's login does, for a call that opens a backend
// connection of its own (the HTTP query endpoint), so that such calls
// cannot get past the limits the wire proxy keeps. A refusal is the wire
// proxy's text (SQLSTATE 53300), naming the database by wireName; release
// gives the slots back.
func (p *Proxy) AdmitQuery(ip, database, wireName string, maxConnections int64) (release func(), refusal string) {
	pol := p.cfg.Policy
	if pol == nil {
		return func() {}, ""
	}
	var set fsm.ClusterSettings
	p.cfg.FSM.View(func(s *fsm.State) { set = s.Settings })
	if !pol.acquire(countIP, ip, set.MaxConnsPerIP) {
		pol.metrics().Rejected("max_conns_per_ip")
		return nil, fmt.Sprintf("connection rejected: too many connections from your IP (max_conns_per_ip %d)", set.MaxConnsPerIP)
	}
	if !pol.acquire(countDB, database, maxConnections) {
		pol.release(countIP, ip)
		pol.metrics().Rejected("max_connections")
		return nil, fmt.Sprintf("too many connections for database %q (max_connections %d)", wireName, maxConnections)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pol.release(countDB, database)
			pol.release(countIP, ip)
		})
	}, ""
}
