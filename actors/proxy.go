package actors

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"tdb/fsm"
	"tdb/wire/classify"
	"tdb/wire/evloop"
)

// ProxyConfig configures the wire proxy of one node.
type ProxyConfig struct {
	NodeID                 string
	FSM                    *fsm.FSM
	TLS                    *tls.Config // nil: no TLS offered
	RequireTLS             bool
	AllowLoopbackPlaintext bool
	Logf                   func(format string, args ...any)

	StartupTimeout time.Duration // silent clients are dropped after this (default 10 s)
	DialTimeout    time.Duration // backend connect timeout (default 10 s)
	// LazyAttach logs a client in without a backend session when none is
	// idle for it, announcing the ParameterStatus values the last session of
	// the same key reported, and attaches one at the client's first message:
	// idle clients then hold no backend. The BackendKeyData pid is then not
	// a backend's (CancelRequests work; pg_cancel_backend(pid) does not).
	LazyAttach bool
	// ServerIdleTimeout closes pooled backend sessions idle this long
	// (server_idle_timeout) [1800 s].
	ServerIdleTimeout time.Duration
	// ClientIdleTimeout closes client connections that sent nothing this
	// long (client_idle_timeout) [1800 s].
	ClientIdleTimeout time.Duration

	// Propose commits commands (captured blueprint versions) through raft.
	Propose Proposer
	// RecordWait is how long DDL that committed in a tenant workspace waits
	// for its blueprint version to be recorded (the leader lost, an
	// election) before its client is warned that it was not [2 min].
	RecordWait time.Duration
	// StopWait is the longest Close waits for sessions to finish what they
	// have in flight before it closes them [DefaultStopWait].
	StopWait time.Duration
	// Now is the clock for timestamps the proxy proposes (default time.Now).
	Now func() time.Time
	// FakeSecret seeds the fake SCRAM salts shown for unknown projects, so
	// they are stable per node and reveal nothing.
	FakeSecret []byte

	// GoroutineRelay relays every session with a goroutine per direction.
	// By default sessions are relayed from one epoll loop (package
	// wire/evloop), which saves a goroutine wake-up per message; clients
	// behind a PROXY protocol header use goroutines.
	GoroutineRelay bool
	// RelayLoops is how many epoll loops relay sessions, each on a thread
	// of its own [1]; a session stays on the loop it was given at login.
	RelayLoops int
	// RelayNice is the niceness of the relay loops' threads
	// (evloop.Options.Nice); 0 leaves the process's.
	RelayNice int
	// LoopFill is how many sessions the first loop relays before new
	// sessions go to the others (pickLoop) [16].
	LoopFill int

	// Cluster hooks (cluster.go); nil on a lone node.
	Cluster ClusterHooks
	// Policy: PROXY protocol, per-IP and per-database limits, auth bans, query
	// log, metrics (admit.go); nil enforces FSM limits and bans only.
	Policy *Policies
}

// DefaultRecordWait is ProxyConfig.RecordWait's default.
const DefaultRecordWait = 2 * time.Minute

// DefaultStopWait is ProxyConfig.StopWait's default. 30 s lets a migration's
// DDL that was about to commit, and the recording of its blueprint version
// in a cluster with a leader, end on their own; a session still busy after
// that waits for something that may never come (a backend that does not
// answer, an election that does not end), and a stop that waits longer is
// killed by its supervisor before raft is shut down cleanly (systemd's
// default TimeoutStopSec is 90 s).
const DefaultStopWait = 30 * time.Second

// unfinishedWait is how long Close waits, once it has closed the sessions
// still busy, for their goroutines to see it: what they may still wait for
// is bounded by a few seconds (a cancel on its way, a Terminate's write).
const unfinishedWait = 10 * time.Second

// Proxy is the node's PostgreSQL wire listener: one connection actor per
// client, and a registry of sessions for cancel requests.
type Proxy struct {
	cfg ProxyConfig

	pool  *Pool
	loops []*evloop.Loop // none: goroutine relay only
	// loopLoad counts the registered sessions given each loop (under mu).
	loopLoad []int
	classes  *classify.Cache // what the parser said of statement texts seen before
	own      ownFunctionsCache
	routing  chan struct{} // slots of the cancels routed to other nodes at once (cluster.go)
	// cutOff ends when Close stops waiting for sessions (StopWait): a
	// blueprint version being recorded is then given up.
	cutOff    context.Context
	cutOffNow context.CancelFunc
	dropped   atomic.Int64 // routed cancels dropped with every slot taken, since the last log

	mu       sync.Mutex
	sessions map[cancelKey]*session
	keys     map[keyRef]int // sessions by key, for endRevoked
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

type cancelKey struct{ pid, secret uint32 }

// keyRef names the key a session logged in with.
type keyRef struct{ projectID, keyID string }

func (s *session) keyRef() keyRef { return keyRef{s.login.projectID, s.login.keyID} }

// The statement classification cache holds at most classCacheEntries texts
// of at most classCacheText bytes: 8 MiB of text at most, enough for the
// statements of many applications, each parsed once.
const (
	classCacheEntries = 2048
	classCacheText    = 4 << 10
)

// NewProxy builds a proxy; Serve runs it.
func NewProxy(cfg ProxyConfig) *Proxy {
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = 10 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.ServerIdleTimeout <= 0 {
		cfg.ServerIdleTimeout = 1800 * time.Second
	}
	if cfg.ClientIdleTimeout <= 0 {
		cfg.ClientIdleTimeout = 1800 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RecordWait <= 0 {
		cfg.RecordWait = DefaultRecordWait
	}
	if cfg.StopWait <= 0 {
		cfg.StopWait = DefaultStopWait
	}
	if len(cfg.FakeSecret) == 0 {
		cfg.FakeSecret = make([]byte, 32)
		_, _ = rand.Read(cfg.FakeSecret)
	}
	if cfg.LoopFill <= 0 {
		cfg.LoopFill = spillAt
	}
	p := &Proxy{
		cfg:      cfg,
		sessions: map[cancelKey]*session{},
		keys:     map[keyRef]int{},
		pool:     &Pool{IdleTimeout: cfg.ServerIdleTimeout},
		conns:    map[net.Conn]struct{}{},
		classes:  classify.NewCache(classCacheEntries, classCacheText),
		routing:  make(chan struct{}, maxRoutedCancels),
	}
	p.cutOff, p.cutOffNow = context.WithCancel(context.Background())
	if !cfg.GoroutineRelay && evloop.Supported() {
		for range max(cfg.RelayLoops, 1) {
			loop, err := evloop.New(evloop.Options{Nice: cfg.RelayNice})
			if err != nil {
				if len(p.loops) == 0 {
					cfg.Logf("proxy: no event loop, relaying with goroutines: %v", err)
				} else {
					cfg.Logf("proxy: %d event loops of %d: %v", len(p.loops), cfg.RelayLoops, err)
				}
				break
			}
			if err := loop.NiceErr(); err != nil && len(p.loops) == 0 {
				cfg.Logf("proxy: %v; the loops run at the process's niceness", err)
			}
			p.loops = append(p.loops, loop)
			p.loopLoad = append(p.loopLoad, 0)
		}
	}
	return p
}

// Serve accepts clients until ln is closed or ctx ends.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go p.janitor(ctx)
	if p.cfg.FSM != nil {
		go p.endRevoked(ctx)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		if len(p.loops) > 0 {
			conn = evloop.NewSocket(conn) // so the event loop can take it after login
		}
		if !p.track(conn) {
			conn.Close()
			return
		}
		p.wg.Add(1)
		c := &clientConn{proxy: p, raw: conn}
		c.onDone(p.wg.Done)
		c.onDone(func() { p.untrack(conn) })
		go c.run(ctx)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// janitor enforces the idle timeouts: pooled backend sessions idle past
// ServerIdleTimeout and clients silent past ClientIdleTimeout are closed.
func (p *Proxy) janitor(ctx context.Context) {
	every := min(p.cfg.ServerIdleTimeout, p.cfg.ClientIdleTimeout) / 4
	every = max(min(every, 30*time.Second), 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.pool.Reap(now)
			p.closeIdleClients(now)
		}
	}
}

// endRevoked closes, after every change of the state, the sessions whose
// key was revoked (or is gone) since they logged in, and the pooled
// sessions of databases deleted, until ctx ends: a leaked key revoked must
// not go on with the sessions it holds.
func (p *Proxy) endRevoked(ctx context.Context) {
	for {
		changed := p.cfg.FSM.Changed()
		p.closeRevoked()
		p.forgetGoneDatabases()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// closeRevoked closes the sessions whose key is no longer live. The relay
// ends as when the client leaves: a running statement is cancelled. It
// looks up each key in use once, not each session: it runs at every change
// of the state.
func (p *Proxy) closeRevoked() {
	p.mu.Lock()
	refs := make([]keyRef, 0, len(p.keys))
	for r := range p.keys {
		refs = append(refs, r)
	}
	p.mu.Unlock()
	dead := map[keyRef]bool{}
	p.cfg.FSM.View(func(st *fsm.State) {
		for _, r := range refs {
			if !keyLive(st, r.projectID, r.keyID) {
				dead[r] = true
			}
		}
	})
	if len(dead) == 0 {
		return
	}
	var gone []*session
	p.mu.Lock()
	for _, s := range p.sessions {
		if dead[s.keyRef()] && !s.revoked.Swap(true) { // closed once, though it ends later
			gone = append(gone, s)
		}
	}
	p.mu.Unlock()
	for _, s := range gone {
		p.cfg.Logf("proxy: key %s was revoked: closed its session on %s", s.login.keyID, s.login.database)
		s.raw.Close()
	}
}

// forgetGoneDatabases closes the pooled sessions of the physical databases
// that are deleted or being deleted. The drop ends their backend sessions,
// and no client asks for them again: without this each would hold a socket
// until ServerIdleTimeout, however many tenants come and go meanwhile.
func (p *Proxy) forgetGoneDatabases() {
	dbs := p.pool.Databases()
	if len(dbs) == 0 {
		return
	}
	gone := map[[2]string]bool{}
	p.cfg.FSM.View(func(st *fsm.State) {
		for _, db := range dbs {
			if !databaseLive(st, db[0], db[1]) {
				gone[db] = true
			}
		}
	})
	p.pool.Forget(gone)
}

// park puts a reset backend session in the pool, unless its database is
// deleted or being deleted meanwhile: then it is closed. It looks after
// the Put: a deletion applied just before it may have had the pool swept
// (forgetGoneDatabases) before the session was in it.
func (p *Proxy) park(bc *BackendConn) {
	p.pool.Put(bc)
	if p.cfg.FSM == nil {
		return
	}
	live := true
	p.cfg.FSM.View(func(st *fsm.State) { live = databaseLive(st, bc.Key.Backend, bc.Key.Database) })
	if !live {
		p.pool.Forget(map[[2]string]bool{dbOf(bc.Key): true})
	}
}

// databaseLive reports whether physical database name is on backend and
// not being deleted.
func databaseLive(st *fsm.State, backend, name string) bool {
	d := st.Databases[name]
	return d != nil && d.Backend == backend && d.Status != fsm.StatusDeleting
}

// keyLive reports whether project projectID has key keyID, not revoked.
func keyLive(st *fsm.State, projectID, keyID string) bool {
	proj := st.Project(projectID)
	if proj == nil {
		return false
	}
	k := proj.Keys[keyID]
	return k != nil && k.Live()
}

// closeIdleClients closes the clients that have been idle past
// ClientIdleTimeout. A client whose statement is still running, or whose
// result it is still reading, is not idle however long ago it sent its last
// message (a long analytical query); its idle time starts at its batch's
// ReadyForQuery (fromBackend).
func (p *Proxy) closeIdleClients(now time.Time) {
	cutoff := now.Add(-p.cfg.ClientIdleTimeout).UnixNano()
	var idle []*session
	p.mu.Lock()
	for _, s := range p.sessions {
		if s.active.Load() < cutoff {
			idle = append(idle, s)
		}
	}
	p.mu.Unlock()
	for _, s := range idle {
		s.mu.Lock()
		// A batch awaits its ReadyForQuery, or one not synced yet
		// (Execute and Flush) awaits a statement's result. One whose
		// results are in, or that ran nothing (a prepare: Parse,
		// Describe, Flush, as asyncpg leaves a pooled connection), is
		// idle.
		busy := s.inflight > 0 || s.unsynced && s.track.awaitsStatement()
		s.mu.Unlock()
		if busy {
			continue
		}
		s.raw.Close() // inside the event loop too: the session leaves it
	}
}

// PoolIdle counts pooled backend sessions waiting for a client.
func (p *Proxy) PoolIdle() int { return p.pool.IdleCount() }

// Close drops every client connection and waits for their actors to end,
// for at most StopWait: the sessions still busy then are closed, client and
// backend connections, and Close waits only for them to see it.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	for _, loop := range p.loops {
		loop.Close() // the sessions it relays end as if their clients had left
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	if !p.drain(done) {
		n := p.closeUnfinished()
		p.cfg.Logf("proxy: stopping: closed %d sessions unfinished after %s: what they had in flight was cut off", n, p.cfg.StopWait)
		select {
		case <-done:
		case <-time.After(unfinishedWait):
			p.cfg.Logf("proxy: stopping without the sessions that did not end %s after they were closed", unfinishedWait)
		}
	}
	p.pool.Close()
}

// drain waits for done, the end of every session, for at most StopWait,
// and reports whether it came. Sessions finish what they have in flight
// (DDL whose blueprint version is being recorded, a statement whose commit
// is to be seen): the wait says every 10 s how many are left, so a long
// stop is not a silent one.
func (p *Proxy) drain(done <-chan struct{}) bool {
	limit := time.NewTimer(p.cfg.StopWait)
	defer limit.Stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return true
		case <-limit.C:
			return false
		case <-tick.C:
			p.mu.Lock()
			n := len(p.sessions)
			p.mu.Unlock()
			p.cfg.Logf("proxy: stopping: %d sessions still finish what they have in flight (a statement whose outcome is awaited, DDL whose blueprint version is being recorded)", n)
		}
	}
}

// closeUnfinished closes the client and backend connections of every
// session still registered, and gives up recording blueprint versions
// (cutOff); it returns how many sessions it closed.
func (p *Proxy) closeUnfinished() int {
	p.cutOffNow()
	p.mu.Lock()
	left := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		left = append(left, s)
	}
	p.mu.Unlock()
	for _, s := range left {
		s.raw.Close()
		s.mu.Lock()
		bc := s.bc
		s.mu.Unlock()
		if bc != nil {
			bc.Conn.Close()
		}
	}
	return len(left)
}

// spillAt is how many sessions the first loop relays, by default, before
// new sessions go to the others (ProxyConfig.LoopFill). A loop waiting in epoll_wait holds its P until the
// runtime's monitor takes it back, and a second loop with sessions of its
// own made a login wait for that (twice the CPU per login with `pgbench
// -C -c 8` on 2 cores), while at 32 and 256 busy clients it gained
// throughput (BENCHMARKS.md): so a few sessions share one loop, and many
// spread.
const spillAt = 16

// pickLoop gives a new session its event loop (under p.mu), and counts it
// there: the first loop until it relays LoopFill sessions, then whichever
// relays fewest (the first on a tie). Nil when sessions are relayed by
// goroutines.
func (p *Proxy) pickLoop() (*evloop.Loop, int) {
	if len(p.loops) == 0 {
		return nil, -1
	}
	i := 0
	if p.loopLoad[0] >= p.cfg.LoopFill {
		for j, n := range p.loopLoad {
			if n < p.loopLoad[i] {
				i = j
			}
		}
	}
	p.loopLoad[i]++
	return p.loops[i], i
}

// register gives a session its cancel key: the backend's real process id
// (clients such as Knex cancel with pg_cancel_backend(pid), which must name
// the real backend) and a proxy-issued random 32-bit secret. A cancel that
// reaches another node is passed to every node; only this one knows the key.
func (p *Proxy) register(s *session) cancelKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		k := cancelKey{pid: s.pid, secret: binary.BigEndian.Uint32(b[:])}
		if _, dup := p.sessions[k]; !dup {
			p.sessions[k] = s
			p.keys[s.keyRef()]++
			s.loop, s.loopIndex = p.pickLoop()
			return k
		}
	}
}

func (p *Proxy) unregister(k cancelKey) {
	p.mu.Lock()
	if s := p.sessions[k]; s != nil {
		delete(p.sessions, k)
		if s.loopIndex >= 0 {
			p.loopLoad[s.loopIndex]--
		}
		if r := s.keyRef(); p.keys[r] <= 1 {
			delete(p.keys, r)
		} else {
			p.keys[r]--
		}
	}
	p.mu.Unlock()
}

// Cancel forwards a client's cancel request to the backend of the session it
// names. Unknown keys are ignored, as PostgreSQL does.
func (p *Proxy) Cancel(ctx context.Context, pid, secret uint32) bool {
	p.mu.Lock()
	s := p.sessions[cancelKey{pid, secret}]
	p.mu.Unlock()
	if s == nil {
		return false
	}
	// A session waiting for the capture lock has its lock statement cancelled,
	// and the client's batch, not yet sent, fails with the cancel's error.
	s.cancelBackend(ctx)
	return true
}

// Sessions counts live client sessions on this node.
func (p *Proxy) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}
