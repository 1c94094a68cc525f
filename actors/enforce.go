package actors

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tdb/fsm"
	"tdb/querylog"
	"tdb/wire/classify"
)

// governor is a session's enforcement of the workspace limits and its query
// log: the limiter core plus what acts on its decisions (the statement timer,
// cancel requests to the backend, writes, log entries). Its hook methods are
// called by the session's pumps, under the session's lock unless noted, and
// are no-ops on a nil governor.
type governor struct {
	s        *session
	lim      *limiter
	clientIP string

	timer    *time.Timer
	timerGen uint64

	// The workspace's limits as last read (limits), and the state's
	// generation then, plus one (0: not read yet).
	limitsNow stmtLimits
	limitsGen uint64

	// cancelling is non-nil while a proxy-initiated CancelRequest is on its
	// way; the client pump forwards nothing until it has been delivered, so
	// the cancel cannot hit a statement the client sends afterwards.
	cancelling atomic.Pointer[chan struct{}]
}

// startGovernor attaches a governor to a session about to relay, and counts
// the bytes it relays.
func startGovernor(s *session, clientIP string) {
	g := &governor{s: s, lim: newLimiter(s.proxy.cfg.Now), clientIP: clientIP}
	s.gov = g
	if m := s.proxy.cfg.Policy.metrics(); m != nil {
		// Counted on the client side: the backend connection and its reader
		// belong to the pool and outlive the session.
		s.client = &countingConn{Conn: s.client,
			read: m.BytesCounter("client_to_backend"), written: m.BytesCounter("backend_to_client")}
	}
}

// limits reads the workspace's settings now, from the local replica: new
// values apply to the next statement on every node. What it read is kept
// until the replica's state changes.
func (g *governor) limits() stmtLimits {
	gen := g.s.proxy.cfg.FSM.Generation() + 1 // before the View: see Generation
	if gen == g.limitsGen {
		return g.limitsNow
	}
	var l stmtLimits
	var ddl versionsDDL
	lg := &g.s.login
	g.s.proxy.cfg.FSM.View(func(st *fsm.State) {
		if p := st.Project(lg.projectID); p != nil {
			if w := p.Workspaces[lg.workspace]; w != nil {
				l = stmtLimits{maxRows: w.Settings.MaxRowsPerQuery, timeoutMs: w.Settings.QueryTimeoutMs}
				if l.maxRows > 0 {
					ddl = blueprintDDL(w)
				}
			}
		}
	})
	var known bool
	l.own, known = g.s.proxy.own.functions(lg.projectID, lg.workspace, ddl)
	if !known {
		return l // asked again next time, until the names are read
	}
	g.limitsNow, g.limitsGen = l, gen
	return l
}

// Client-side hooks.

func (g *governor) query(sql string, r classify.Result) {
	if g == nil {
		return
	}
	var stmts []string
	// The statements of a Query are slices of its text: from a large one,
	// each is copied, so the query log does not keep the whole text alive
	// for a short statement (a long one is copied when it is cut).
	big := len(r.Statements) > 1 && len(sql) > querylog.MaxStatement
	for _, st := range r.Statements {
		text := st.Text
		if big && len(text) <= querylog.MaxStatement {
			text = strings.Clone(text)
		}
		stmts = append(stmts, text)
	}
	g.lim.query(sql, stmts, g.limits())
	g.rearm()
}

// bind records a Bind of a statement whose text the tracker knows.
func (g *governor) bind(portal, text string) {
	if g != nil {
		g.lim.bind(portal, text)
	}
}

func (g *governor) execute(portal string) {
	if g == nil {
		return
	}
	g.lim.execute(portal, g.limits())
	g.rearm()
}

func (g *governor) closeMsg(kind byte, name string) {
	if g != nil {
		g.lim.close(kind, name)
	}
}

func (g *governor) sync() {
	if g != nil {
		g.lim.sync()
	}
}

// awaitCancel blocks while a proxy-initiated cancel is on its way (client
// pump, without the lock).
func (g *governor) awaitCancel() {
	if g == nil {
		return
	}
	if ch := g.cancelling.Load(); ch != nil {
		<-*ch
	}
}

// cancelPending reports whether a proxy-initiated cancel is on its way (the
// event loop hands the session to the goroutine relay, which waits for it).
func (g *governor) cancelPending() bool {
	return g != nil && g.cancelling.Load() != nil
}

// Backend-side hooks: each returns what to do with the frame.

func (g *governor) dataRow() relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.after(g.lim.dataRow())
}

func (g *governor) commandComplete(tag []byte) relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.after(g.lim.commandComplete(tag))
}

// endsTx notes that the statement completing now ended its transaction,
// before its CommandComplete (commandComplete).
func (g *governor) endsTx() {
	if g != nil {
		g.lim.headEndsTx()
	}
}

func (g *governor) errorResponse(severity, code string) relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.after(g.lim.errorResponse(severity, code))
}

func (g *governor) emptyQuery() relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.after(g.lim.emptyQuery())
}

func (g *governor) portalSuspended() relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.after(g.lim.portalSuspended())
}

func (g *governor) readyForQuery(status byte) relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.after(g.lim.readyForQuery(status))
}

func (g *governor) other(typ byte) relayAction {
	if g == nil {
		return relayAction{}
	}
	return g.lim.other(typ)
}

// after acts on a decision: the cancel, the statement timer, the log.
func (g *governor) after(act relayAction) relayAction {
	if act.cancel != "" {
		g.cancel(act.cancel)
	}
	g.rearm()
	if done := g.lim.collect(); len(done) > 0 {
		g.log(done)
		clear(done) // the limiter reuses the slice; keep no statement text alive
	}
	return act
}

// forward writes a backend frame to the client as act says (backend pump,
// without the lock).
func (g *governor) forward(fw frameWriter, typ byte, body []byte, act relayAction) error {
	if len(act.out) > 0 {
		if err := fw.WriteRaw(act.out); err != nil {
			return err
		}
	}
	if act.drop {
		return nil
	}
	return fw.Write(typ, body)
}

// frameWriter is the part of wire.FrameWriter forward needs.
type frameWriter interface {
	Write(typ byte, body []byte) error
	WriteRaw(frames []byte) error
}

// rearm points the statement timer at the head statement's deadline. The
// session keeps one timer and moves it: a workspace with query_timeout_ms
// arms it for every statement.
func (g *governor) rearm() {
	gen, at, ok := g.lim.deadline()
	if !ok {
		if g.timer != nil && g.timerGen != 0 {
			g.timer.Stop()
			g.timerGen = 0
		}
		return
	}
	if gen == g.timerGen {
		return
	}
	g.timerGen = gen
	if g.timer == nil {
		g.timer = time.AfterFunc(at.Sub(g.s.proxy.cfg.Now()), g.fire)
		return
	}
	g.timer.Reset(at.Sub(g.s.proxy.cfg.Now()))
}

// fire runs when the statement timer expires (timer goroutine). A firing
// that began before the timer moved on to the next statement finds that
// statement's deadline still ahead, and does nothing. The cancel is marked
// on its way before the lock goes: the statement may end at once, and the
// client's next message must wait for the cancel (awaitCancel).
func (g *governor) fire() {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if gen, at, ok := g.lim.deadline(); ok && gen == g.timerGen {
		if now := g.s.proxy.cfg.Now(); now.Before(at) {
			// Early by the clock the deadline came from (a clock other than
			// the timers' own): wait for the rest, rearm would not.
			g.timer.Reset(at.Sub(now))
		} else if g.lim.expire(gen) {
			g.cancel(limitTimeout)
		}
	}
}

// cancel sends a CancelRequest for the backend's running statement, unless
// one is already on its way.
func (g *governor) cancel(limit string) {
	ch := make(chan struct{})
	if !g.cancelling.CompareAndSwap(nil, &ch) {
		return
	}
	g.s.proxy.cfg.Policy.metrics().LimitCancel(limit)
	go func() {
		defer func() {
			g.cancelling.Store(nil)
			close(ch)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), g.s.proxy.cfg.DialTimeout)
		defer cancel()
		g.s.cancelBackend(ctx)
	}()
}

// log writes finished statements to the query log and the metrics.
func (g *governor) log(done []stmtDone) {
	pol := g.s.proxy.cfg.Policy
	m := pol.metrics()
	ql := pol.queryLog()
	lg := &g.s.login
	for _, d := range done {
		m.Statement(d.sqlstate)
		if ql == nil {
			continue
		}
		text, cut := querylog.Truncate(d.text)
		ql.Add(querylog.Entry{
			Time: d.start.UTC(), Node: g.s.proxy.cfg.NodeID, Project: lg.projectID, Database: lg.database,
			Workspace: lg.workspace, Tenant: lg.tenant, KeyID: lg.keyID, Role: lg.role,
			ClientIP: g.clientIP, Statement: text, Truncated: cut,
			DurationMs: float64(d.duration.Microseconds()) / 1000, Rows: d.rows, SQLState: d.sqlstate,
		})
	}
}

// end stops the statement timer when the relay is over, and logs the
// statements that were still running.
func (g *governor) end() {
	if g == nil {
		return
	}
	g.s.mu.Lock()
	if g.timer != nil {
		g.timer.Stop()
	}
	g.timerGen = ^uint64(0)
	g.lim.sessionEnded()
	if done := g.lim.collect(); len(done) > 0 {
		g.log(done)
		clear(done)
	}
	g.s.mu.Unlock()
}

// countingConn counts the bytes read from and written to a connection.
type countingConn struct {
	net.Conn
	read, written prometheus.Counter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.written.Add(float64(n))
	}
	return n, err
}
