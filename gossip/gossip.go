package gossip

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/memberlist"
)

// Config configures one node's gossip. Timing knobs are fields so tests can
// shrink them; zero means memberlist's LAN default.
type Config struct {
	Meta          Meta   // Meta.ID is the memberlist node name
	BindAddr      string // host:port; port 0 picks a free one
	AdvertiseAddr string // host:port others dial; default: derived from BindAddr
	// SecretKey (16, 24 or 32 bytes) encrypts and authenticates gossip, so
	// only holders of the cluster secret can join. nil: plaintext.
	SecretKey []byte
	// Join lists members' gossip addresses, tried until one answers.
	Join []string
	// PeersFile, when set, keeps the gossip addresses of known members
	// across restarts; they are joined at start like Join.
	PeersFile string
	Logf      func(format string, args ...any)
	// LogOutput receives memberlist's warnings and errors (default: Logf).
	LogOutput io.Writer

	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	// ResyncInterval is how often the table is checked against memberlist
	// (default 1 s); RejoinInterval how often unreachable known members are
	// joined again (default 10 s); RefreshInterval how often this node
	// re-advertises its meta (default 10 s).
	ResyncInterval  time.Duration
	RejoinInterval  time.Duration
	RefreshInterval time.Duration
	// ForgetAfter is how long a member that left or failed stays in the
	// table (default 144 h): then it is forgotten, so that nodes that come
	// and go under new names do not pile up in the table, the saved peers
	// and the rejoin attempts. A member forgotten that comes back is listed
	// again at its join.
	ForgetAfter time.Duration
	// EventQueue is the callbacks' queue length (default 256).
	EventQueue int
	// ClusterID, when set, gives Meta.Cluster each time the meta is sent.
	ClusterID func() string
}

// Gossip is a running memberlist with its membership table.
type Gossip struct {
	cfg     Config
	ml      *memberlist.Memberlist
	addr    string        // this node's gossip address
	events  chan event    // callbacks → loop; never blocks a callback
	changes chan struct{} // loop → subscriber, capacity 1

	metaMu sync.Mutex
	meta   Meta

	mu     sync.RWMutex
	tbl    *table
	joined bool // some Join succeeded once

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start creates the memberlist, starts the table loop and tries the join
// addresses (Join and the saved peers) in the background until one answers.
func Start(cfg Config) (*Gossip, error) {
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Second
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 10 * time.Second
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 10 * time.Second
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = 144 * time.Hour
	}
	if cfg.EventQueue <= 0 {
		cfg.EventQueue = 256
	}
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, errors.Wrapf(err, "gossip address %q", cfg.BindAddr)
	}
	g := &Gossip{
		cfg:     cfg,
		events:  make(chan event, cfg.EventQueue),
		changes: make(chan struct{}, 1),
		meta:    cfg.Meta,
		tbl:     newTable(cfg.Meta.ID),
		stop:    make(chan struct{}),
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		ahost, aport, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, errors.Wrapf(err, "gossip advertise address %q", cfg.AdvertiseAddr)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ahost, aport
	}
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	// A node that restarts with other addresses may take its name back
	// once the old incarnation is dead.
	mc.DeadNodeReclaimTime = time.Second
	out := cfg.LogOutput
	if out == nil {
		out = logfWriter(cfg.Logf)
	}
	mc.Logger = log.New(&levelFilter{out: out}, cfg.Meta.ID+" ", log.Lmicroseconds)
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, errors.Wrapf(err, "start gossip on %s", cfg.BindAddr)
	}
	g.ml = ml
	// This node's address, fixed from now on. memberlist's LocalNode is not
	// safe to read while it updates itself, so it is read only when it must
	// pick the address itself (an unspecified bind address), before any
	// goroutine of ours runs.
	switch {
	case mc.AdvertiseAddr != "":
		g.addr = net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(mc.AdvertisePort))
	case net.ParseIP(mc.BindAddr) != nil && !net.ParseIP(mc.BindAddr).IsUnspecified():
		g.addr = net.JoinHostPort(mc.BindAddr, strconv.Itoa(mc.BindPort))
	default:
		g.addr = ml.LocalNode().Address()
	}
	// The saved peers are read before the loop can save the table, which
	// at first holds this node alone.
	saved := loadPeers(cfg.PeersFile)
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.loop() }()
	go func() { defer g.wg.Done(); g.rejoinLoop(saved) }()
	return g, nil
}

// Addr is the gossip address others reach this node at.
func (g *Gossip) Addr() string { return g.addr }

// Changes delivers a signal after the table changed. Signals coalesce: read
// Members after each.
func (g *Gossip) Changes() <-chan struct{} { return g.changes }

// Members returns the membership table, this node included, sorted by id.
func (g *Gossip) Members() []Member {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.tbl.list()
}

// Member returns the member with the given id.
func (g *Gossip) Member(id string) (Member, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	m, ok := g.tbl.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Join contacts the given gossip addresses; it succeeds when one answers.
func (g *Gossip) Join(addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	if _, err := g.ml.Join(addrs); err != nil {
		return errors.Wrapf(err, "gossip join %v", addrs)
	}
	g.mu.Lock()
	g.joined = true
	g.mu.Unlock()
	return nil
}

// Leave tells the others this node is leaving for good (they remove it from
// raft at once), then leaves the gossip.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.metaMu.Lock()
	g.meta.Leaving = true
	g.metaMu.Unlock()
	if err := g.ml.UpdateNode(timeout); err != nil {
		g.cfg.Logf("gossip: announce leave: %v", err)
	}
	return errors.Wrap(g.ml.Leave(timeout), "gossip leave")
}

// Shutdown stops gossiping without leaving: the others see this node fail.
func (g *Gossip) Shutdown() error {
	select {
	case <-g.stop:
		return nil
	default:
	}
	close(g.stop)
	err := g.ml.Shutdown()
	g.wg.Wait()
	return errors.Wrap(err, "gossip shutdown")
}

// loop owns the table: it applies queued events and resyncs on a timer.
func (g *Gossip) loop() {
	t := time.NewTicker(g.cfg.ResyncInterval)
	defer t.Stop()
	for {
		var changed bool
		select {
		case <-g.stop:
			return
		case ev := <-g.events:
			g.mu.Lock()
			changed = g.tbl.apply(ev, time.Now())
			g.mu.Unlock()
		case <-t.C:
			live := make([]string, 0, 8)
			for _, n := range g.ml.Members() {
				live = append(live, n.Name) // Name never changes; Meta and Addr would race
			}
			now := time.Now()
			g.mu.Lock()
			changed = g.tbl.resync(live, now)
			if g.tbl.forget(now, g.cfg.ForgetAfter) {
				changed = true
			}
			g.mu.Unlock()
		}
		if changed {
			g.savePeers()
			select {
			case g.changes <- struct{}{}:
			default: // a signal is already pending; the reader sees this change too
			}
		}
	}
}

// Readvertise sends this node's meta again now, for a change that should
// not wait for the next refresh.
func (g *Gossip) Readvertise() { g.refresh() }

// refresh re-advertises this node's meta with a new Refresh count.
func (g *Gossip) refresh() {
	g.metaMu.Lock()
	g.meta.Refresh++
	g.metaMu.Unlock()
	if err := g.ml.UpdateNode(g.cfg.RefreshInterval); err != nil {
		g.cfg.Logf("gossip: refresh meta: %v", err)
	}
}

// rejoinLoop joins Join and the saved peers until one answers, then keeps
// joining known members that failed, and, one tick in seedEvery, those of
// Join and the saved peers not alive, so the cluster heals after a partition
// (however long) or a restart of several nodes. It also refreshes this node's meta.
func (g *Gossip) rejoinLoop(saved []string) {
	rejoin := time.NewTicker(g.cfg.RejoinInterval)
	defer rejoin.Stop()
	refresh := time.NewTicker(g.cfg.RefreshInterval)
	defer refresh.Stop()
	logged := false
	ticks := 0
	tryJoin := func() {
		// Once joined, the seeds and saved peers are tried one tick in
		// seedEvery: a name that resolves to a member (a hostname) never
		// reads as alive, and a join is a full state exchange.
		seeds := ticks%seedEvery == 0
		ticks++
		addrs := g.rejoinAddrs(saved, seeds)
		if len(addrs) == 0 {
			return
		}
		if err := g.Join(addrs); err != nil {
			if !logged {
				g.cfg.Logf("gossip: %v (retrying every %s)", err, g.cfg.RejoinInterval)
			}
			logged = true
			return
		}
		logged = false
	}
	tryJoin()
	// Until a first join succeeds, retry every second (the members named
	// in Join may be starting up too).
	fast := time.NewTicker(min(time.Second, g.cfg.RejoinInterval))
	defer fast.Stop()
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		// Stopping wins over a tick that is due as well: a refresh or a
		// join can take memberlist's timeout (10 s) once the node is
		// shutting down.
		select {
		case <-g.stop:
			return
		case <-refresh.C:
			g.refresh()
		case <-rejoin.C:
			tryJoin()
		case <-fast.C:
			g.mu.RLock()
			joined := g.joined
			g.mu.RUnlock()
			if !joined {
				tryJoin()
			}
		}
	}
}

// seedEvery is how many rejoin ticks pass between two tries of the seeds
// and saved peers once this node has joined (rejoinLoop).
const seedEvery = 10

// rejoinAddrs lists the addresses to join: the failed members, and the
// seeds (Join) and saved peers not alive when seeds is set or this node
// has not joined yet.
func (g *Gossip) rejoinAddrs(saved []string, seeds bool) []string {
	self := g.Addr()
	g.mu.RLock()
	defer g.mu.RUnlock()
	alive := map[string]bool{}
	for _, m := range g.tbl.members {
		if m.State == StateAlive {
			alive[m.GossipAddr] = true
		}
	}
	seen := map[string]bool{self: true}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] && !alive[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	// Also once joined (now and then): a member partitioned away for
	// longer than ForgetAfter is no longer in the table to be retried, and
	// the two sides would never meet again.
	if seeds || !g.joined {
		for _, a := range g.cfg.Join {
			add(a)
		}
		for _, a := range saved {
			add(a)
		}
	}
	for _, m := range g.tbl.members {
		if m.State == StateFailed && m.ID != g.cfg.Meta.ID {
			add(m.GossipAddr)
		}
	}
	return out
}

// savePeers records the gossip addresses of the members that have not left.
func (g *Gossip) savePeers() {
	if g.cfg.PeersFile == "" {
		return
	}
	g.mu.RLock()
	var addrs []string
	for _, m := range g.tbl.list() {
		if m.ID != g.cfg.Meta.ID && m.State != StateLeft && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	joined := g.joined
	g.mu.RUnlock()
	if len(addrs) == 0 && !joined {
		return // no member reached yet: keep the peers an earlier run saved
	}
	data, _ := json.Marshal(addrs)
	tmp := g.cfg.PeersFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		g.cfg.Logf("gossip: save peers: %v", err)
		return
	}
	if err := os.Rename(tmp, g.cfg.PeersFile); err != nil {
		g.cfg.Logf("gossip: save peers: %v", err)
	}
}

func loadPeers(path string) []string {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var addrs []string
	_ = json.Unmarshal(data, &addrs)
	return addrs
}

// enqueue hands a callback's event to the loop without ever blocking
// memberlist; a dropped event is logged and repaired by the next resync.
func (g *Gossip) enqueue(ev event) {
	select {
	case g.events <- ev:
	default:
		g.cfg.Logf("gossip: event queue full, dropped an event for %s (the next resync repairs it)", ev.name)
	}
}

// delegate serves the node's meta to memberlist.
type delegate Gossip

func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	if d.cfg.ClusterID != nil {
		d.meta.Cluster = d.cfg.ClusterID()
	}
	data, _ := json.Marshal(d.meta)
	d.metaMu.Unlock()
	if len(data) > limit {
		(*Gossip)(d).cfg.Logf("gossip: node meta is %d bytes, over the limit %d", len(data), limit)
		return nil
	}
	return data
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// events turns memberlist callbacks into queued events.
type events Gossip

func (e *events) NotifyJoin(n *memberlist.Node)   { e.note(evJoin, n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.note(evUpdate, n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.note(evLeave, n) }

func (e *events) note(kind eventKind, n *memberlist.Node) {
	(*Gossip)(e).enqueue(event{kind: kind, name: n.Name, gossipAddr: n.Address(), meta: bytes.Clone(n.Meta)})
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, errors.Newf("bad port %q", p)
	}
	return host, port, nil
}

// levelFilter drops memberlist's DEBUG and INFO lines.
type levelFilter struct{ out io.Writer }

func (f *levelFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("[DEBUG]")) || bytes.Contains(p, []byte("[INFO]")) {
		return len(p), nil
	}
	return f.out.Write(p)
}

type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}
