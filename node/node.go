package node

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/actors"
	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/gossip"
	"tdb/httpapi"
	"tdb/wire"
)

// Config describes one node.
type Config struct {
	NodeID   string
	DataDir  string
	WireAddr string // listen address of the PostgreSQL wire proxy
	HTTPAddr string // listen address of the control plane
	RaftAddr string // listen address of raft
	// PublicWireAddr is the host:port put in connection strings; defaults to
	// the bound wire address.
	PublicWireAddr string
	Bootstrap      bool // bootstrap a new cluster when the data dir is empty
	// Restore starts a new cluster, this node its only server, from a
	// metadata backup (restore.go); DataDir must be empty or absent.
	Restore  *fsm.Backup
	AdminKey string // the cluster operator's key

	TLSCertFile, TLSKeyFile string // wire TLS; empty = a self-signed cert in the data dir
	RequireTLS              bool   // refuse plaintext wire clients (except AllowLoopbackPlaintext)
	AllowLoopbackPlaintext  bool   // `tdb dev`: plaintext from loopback is fine

	LogOutput io.Writer
	Raft      RaftConfig // timing knobs; addresses and dirs are filled in from above

	// GossipAddr is the gossip listen address; empty runs a lone node
	// without gossip (`tdb dev`). Join lists members' gossip addresses.
	GossipAddr string
	Join       []string
	// ClusterSecret authenticates node-to-node calls and encrypts gossip;
	// empty: DeriveClusterSecret(AdminKey).
	ClusterSecret string
	Cluster       ClusterConfig // membership and fail-closed knobs (cluster.go)

	// ProxyProtocolFrom: load balancers whose connections must carry a PROXY
	// v1/v2 header (and no one else's may); empty: off (policy.go).
	ProxyProtocolFrom []netip.Prefix
	QueryLogCapacity  int // query log entries kept in memory (default 10,000)
	// HTTPReadTimeout bounds reading one HTTP request, body included, and
	// HTTPIdleTimeout a kept-alive connection's wait for the next [60 s and
	// 120 s]: a client that sends a byte now and then holds nothing forever.
	HTTPReadTimeout, HTTPIdleTimeout time.Duration
	// BanBatchInterval is how often the node proposes the failed logins it
	// saw to the cluster [200 ms] (actors.BanTrackerConfig.Interval).
	BanBatchInterval time.Duration
	// RevokedKeyRetention is how long a revoked key stays in the metadata
	// (listed as revoked) before the leader removes it [7 days]; a removed
	// key is refused as an unknown one (compact.go).
	RevokedKeyRetention time.Duration
	// BanBatchRetention is how long after a node's last batch of failed
	// logins the cluster keeps its batch IDs once the node is out of the
	// raft configuration [24 h] (compact.go).
	BanBatchRetention time.Duration
	// CompactInterval is how often the leader looks for what to compact
	// [10 min] (compact.go).
	CompactInterval time.Duration

	// ServerIdleTimeout and ClientIdleTimeout are the session pool's
	// server_idle_timeout and client_idle_timeout [1800 s each].
	ServerIdleTimeout time.Duration
	ClientIdleTimeout time.Duration
	// JournalSweep is how often the leader records what the DDL journals
	// of tenant workspaces hold that no session recorded
	// (actors.Reconciler.JournalSweep) [actors.DefaultJournalSweep].
	JournalSweep time.Duration
	// StopWait is the longest Stop waits for sessions to finish what they
	// have in flight before it closes them (actors.ProxyConfig.StopWait)
	// [DefaultStopWait].
	StopWait time.Duration
	// LazyBackendAttach: a client logs in without a backend session when
	// none is idle and attaches one at its first message (actors.ProxyConfig.LazyAttach).
	LazyBackendAttach bool
	// GoroutineRelay relays every session with a goroutine per direction
	// instead of the epoll loop (actors.ProxyConfig.GoroutineRelay).
	GoroutineRelay bool
	// RelayLoops is how many epoll loops relay sessions, 1 to MaxRelayLoops
	// (actors.ProxyConfig.RelayLoops); 0 picks DefaultRelayLoops(GOMAXPROCS).
	RelayLoops int
	// RelayNice is the niceness of the relay loops' threads, -20 to 19
	// (actors.ProxyConfig.RelayNice); 0 leaves the process's.
	RelayNice int
	// RelayLoopFill is how many sessions the first loop relays before new
	// sessions go to the others (actors.ProxyConfig.LoopFill); 0: 16.
	RelayLoopFill int
}

// DefaultStopWait is Config.StopWait's default (actors.DefaultStopWait says why).
const DefaultStopWait = actors.DefaultStopWait

// MaxRelayLoops bounds Config.RelayLoops: each loop is a thread and an epoll set.
const MaxRelayLoops = 64

// MinRelayNice and MaxRelayNice bound Config.RelayNice: the niceness range.
const (
	MinRelayNice = -20
	MaxRelayNice = 19
)

// DefaultRelayLoops is the loop count when none is given, for a node running
// Go code on procs threads (GOMAXPROCS): one loop per four, at least two
// (one on a single thread). A loop blocks in epoll_wait holding its P until
// the runtime's monitor takes it back, which the monitor does once no P is
// idle: with as many loops as Ps relaying sessions, a goroutine made ready
// while they wait (a login's next message) waits for the monitor, which
// then wakes every 20 us. Sessions fill the first loop before the second
// takes any (actors.ProxyConfig.LoopFill), so a node with few sessions
// relays them on one loop.
// On the 2-core machine of BENCHMARKS.md (same binary, two runs of
// alternating rounds, tdb/PgBouncer), two loops against one: `pgbench -S
// -c 256` 0.91-1.05 to 0.98-1.02 simple and 0.78 to 0.87-0.96 prepared,
// `-c 32` 0.85-1.03 to 1.01-1.02 simple and 0.83-0.85 to 0.83-0.84
// prepared, `-C -c 8` (on one loop either way) 1.64-1.77 to 1.63.
func DefaultRelayLoops(procs int) int { return max(min(2, procs), min(MaxRelayLoops, procs/4)) }

// Node is a running tdb node.
type Node struct {
	cfg     Config
	rep     *Replica
	httpLn  net.Listener
	wireLn  net.Listener
	httpSrv *http.Server
	proxy   *actors.Proxy
	logger  *log.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	gossip    *gossip.Gossip // nil on a lone node
	secret    string         // cluster secret for internal calls
	client    *http.Client   // internal calls to HTTP addresses, with the secret
	tlsClient *http.Client   // internal calls over the raft listeners' TLS, no secret sent (internal.go); nil without a secret
	tlsReads  *http.Client   // the same for GET calls, keeping connections
	// internalSrv serves the internal calls that come over the raft listener.
	internalSrv *http.Server
	startedAt   time.Time
	pol         *policyParts // metrics, query log, ban tracker (policy.go)

	refusedBuild   map[string]uint16           // membership loop only: members kept out for their build, logged once
	foreignCluster map[string]string           // membership loop only: members of another cluster, logged once
	caughtUpTerm   uint64                      // membership loop only: the term whose leader state is known to be caught up (leaderCaughtUp)
	versionHeldBy  string                      // membership loop only: the server last logged as holding the log version back
	unheardSince   map[raft.ServerID]time.Time // membership loop only: raft servers this node's gossip never heard of, since when
}

// Start opens the replica, waits for a leader, and starts serving.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.RelayLoops < 0 || cfg.RelayLoops > MaxRelayLoops {
		return nil, errors.Newf("--relay-loops must be from 0 (one loop per 4 Go threads) to %d, not %d", MaxRelayLoops, cfg.RelayLoops)
	}
	if cfg.RelayNice < MinRelayNice || cfg.RelayNice > MaxRelayNice {
		return nil, errors.Newf("--relay-nice must be from %d to %d, not %d", MinRelayNice, MaxRelayNice, cfg.RelayNice)
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	logger := log.New(cfg.LogOutput, "["+cfg.NodeID+"] ", log.LstdFlags|log.Lmicroseconds)
	if cfg.RelayLoops == 0 {
		cfg.RelayLoops = DefaultRelayLoops(runtime.GOMAXPROCS(0))
	}
	if cfg.HTTPReadTimeout == 0 {
		cfg.HTTPReadTimeout = 60 * time.Second
	}
	if cfg.HTTPIdleTimeout == 0 {
		cfg.HTTPIdleTimeout = 120 * time.Second
	}
	if cfg.RevokedKeyRetention <= 0 {
		cfg.RevokedKeyRetention = DefaultRevokedKeyRetention
	}
	if cfg.BanBatchRetention <= 0 {
		cfg.BanBatchRetention = DefaultBanBatchRetention
	}
	if cfg.CompactInterval <= 0 {
		cfg.CompactInterval = DefaultCompactInterval
	}
	if !cfg.GoroutineRelay {
		logger.Printf("relay: %d event loop(s) for %d Go threads, nice %d (--relay-loops, --procs, --relay-nice)",
			cfg.RelayLoops, runtime.GOMAXPROCS(0), cfg.RelayNice)
	}
	rc := cfg.Raft
	rc.NodeID = cfg.NodeID
	rc.Dir = filepath.Join(cfg.DataDir, "raft")
	rc.BindAddr = cfg.RaftAddr
	rc.Bootstrap = cfg.Bootstrap
	if cfg.Restore != nil {
		if !cfg.Bootstrap {
			return nil, errors.New("restore: a restored node starts a new cluster: it joins none")
		}
		if err := checkRestoreDir(cfg.DataDir); err != nil {
			return nil, err
		}
		rc.Restore = cfg.Restore
	}
	rc.LogOutput = cfg.LogOutput
	secret := cfg.ClusterSecret
	if secret == "" {
		secret = DeriveClusterSecret(cfg.AdminKey)
	}
	rc.Secret = secret
	rep, err := OpenReplica(rc)
	if err != nil {
		if cfg.Restore != nil {
			// The directory was empty: what the failed restore left in it
			// would only make the next attempt refuse it.
			_ = os.RemoveAll(rc.Dir)
		}
		return nil, err
	}
	n := &Node{cfg: cfg, rep: rep, logger: logger, startedAt: time.Now(), client: newInternalClient(), secret: secret,
		refusedBuild: map[string]uint16{}, foreignCluster: map[string]string{}, unheardSince: map[raft.ServerID]time.Time{}}
	n.cfg.Cluster.setDefaults()
	if rep.internalLn != nil {
		if n.tlsClient, n.tlsReads, err = internalClients(secret, rep.ClusterID); err != nil {
			rep.Close()
			return nil, err
		}
	}

	tlsCfg, err := n.tlsConfig()
	if err != nil {
		rep.Close()
		return nil, err
	}
	fakeSalt, err := fakeSaltSecret(secret, cfg.DataDir)
	if err != nil {
		rep.Close()
		return nil, err
	}
	if n.wireLn, err = net.Listen("tcp", cfg.WireAddr); err != nil {
		rep.Close()
		return nil, errors.Wrapf(err, "listen wire on %s", cfg.WireAddr)
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		n.wireLn.Close()
		rep.Close()
		return nil, errors.Wrapf(err, "listen http on %s", cfg.HTTPAddr)
	}
	if err := n.startGossip(); err != nil {
		n.httpLn.Close()
		n.wireLn.Close()
		rep.Close()
		return nil, err
	}
	// A joining node learns of its leader once the leader has added it,
	// which needs the gossip above; a restarted member of a larger cluster
	// may have to wait for the others.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rep.WaitLeader(wctx); err != nil && cfg.Bootstrap && n.loneServer() {
		n.stopGossip()
		n.httpLn.Close()
		n.wireLn.Close()
		rep.Close()
		return nil, err
	}
	if n.cfg.PublicWireAddr == "" {
		n.cfg.PublicWireAddr = n.wireLn.Addr().String()
	}

	runCtx, runCancel := context.WithCancel(context.Background())
	n.cancel = runCancel
	policy := n.startPolicies(runCtx) // before any actor proposes: Apply observes it
	// Leader work is fenced on backends by raft's term (backend.Fence).
	rec := &actors.Reconciler{FSM: rep.FSM, Propose: n, IsLeader: rep.IsLeader, Term: rep.Raft.CurrentTerm, ConfirmLeader: n.confirmLeader,
		Logf:         logger.Printf,
		JournalSweep: cfg.JournalSweep}
	n.goRun(func() { rec.Run(runCtx) })
	leader := actors.LeaderActor{FSM: rep.FSM, Propose: n, IsLeader: rep.IsLeader, Term: rep.Raft.CurrentTerm, ConfirmLeader: n.confirmLeader,
		Logf: logger.Printf}
	dep := &actors.Deployer{LeaderActor: leader}
	n.goRun(func() { dep.Run(runCtx) })
	imp := &actors.Importer{LeaderActor: leader}
	n.goRun(func() { imp.Run(runCtx) })

	n.proxy = actors.NewProxy(actors.ProxyConfig{
		NodeID:                 cfg.NodeID,
		FSM:                    rep.FSM,
		TLS:                    tlsCfg,
		RequireTLS:             cfg.RequireTLS,
		AllowLoopbackPlaintext: cfg.AllowLoopbackPlaintext,
		Propose:                n,
		FakeSecret:             fakeSalt,
		ServerIdleTimeout:      cfg.ServerIdleTimeout,
		LazyAttach:             cfg.LazyBackendAttach,
		GoroutineRelay:         cfg.GoroutineRelay,
		RelayLoops:             cfg.RelayLoops,
		LoopFill:               cfg.RelayLoopFill,
		RelayNice:              cfg.RelayNice,
		ClientIdleTimeout:      cfg.ClientIdleTimeout,
		StopWait:               cfg.StopWait,
		Logf:                   logger.Printf,
		Policy:                 policy,
		Cluster: actors.ClusterHooks{
			Admit: n.admitLogin, CatchUp: n.catchUp, CatchUpTimeout: n.cfg.Cluster.CatchUpTimeout, RouteCancel: n.routeCancel,
			LeaderLost: n.lostLeader,
		},
	})
	n.goRun(func() { n.proxy.Serve(runCtx, n.wireLn) })
	n.goRun(func() { n.membershipLoop(runCtx) })
	n.goRun(func() { n.compactLoop(runCtx) })
	n.goRun(func() { n.shareCounts(runCtx) })

	n.httpSrv = &http.Server{
		Handler:           n.withInternal(httpapi.New(n, logger.Printf)),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       n.cfg.HTTPReadTimeout,
		IdleTimeout:       n.cfg.HTTPIdleTimeout,
	}
	n.goRun(func() {
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("http: %v", err)
		}
	})
	if rep.internalLn != nil {
		n.internalSrv = &http.Server{
			Handler:           jsonRoutes(n.internalRoutes(func(h http.HandlerFunc) http.HandlerFunc { return n.bounded(h) })),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       n.cfg.HTTPReadTimeout,
			IdleTimeout:       n.cfg.HTTPIdleTimeout,
		}
		n.goRun(func() {
			if err := n.internalSrv.Serve(rep.internalLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				logger.Printf("internal http: %v", err)
			}
		})
	}
	return n, nil
}

func (n *Node) goRun(fn func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); fn() }()
}

func (n *Node) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if n.cfg.TLSCertFile != "" {
		cert, err = wire.LoadCert(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
	} else {
		cert, err = wire.LoadOrCreateCert(filepath.Join(n.cfg.DataDir, "tls"))
	}
	if err != nil {
		return nil, errors.Wrap(err, "wire tls certificate")
	}
	return wire.ServerTLSConfig(cert), nil
}

// Stop stops serving and shuts raft down. Sessions busy past
// Config.StopWait are closed unfinished.
func (n *Node) Stop() error {
	n.wireLn.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.httpSrv.Shutdown(sctx)
	if n.internalSrv != nil {
		_ = n.internalSrv.Shutdown(sctx)
	}
	n.cancel()
	n.proxy.Close()
	n.wg.Wait()
	n.stopPolicies()
	n.stopGossip()
	return n.rep.Close()
}

// HTTPAddr is the bound control-plane address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// BoundWireAddr is the bound wire proxy address.
func (n *Node) BoundWireAddr() string { return n.wireLn.Addr().String() }

// Replica exposes the raft replica (tests, cluster tooling).
func (n *Node) Replica() *Replica { return n.rep }

// FSM implements httpapi.Cluster.
func (n *Node) FSM() *fsm.FSM { return n.rep.FSM }

// AdminKey implements httpapi.Cluster.
func (n *Node) AdminKey() string { return n.cfg.AdminKey }

// WireAddr implements httpapi.Cluster.
func (n *Node) WireAddr() string { return n.cfg.PublicWireAddr }

// CheckBackend implements httpapi.BackendChecker: this node must reach a
// server as a superuser before it is registered as a backend.
func (n *Node) CheckBackend(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return backend.Check(ctx, url)
}

// Apply implements httpapi.Cluster: commits through the leader, forwarding
// from a follower (applyAnywhere).
func (n *Node) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	defer n.observeApply(time.Now())
	if n.gossip == nil {
		return n.rep.Apply(ctx, t, payload)
	}
	return n.applyAnywhere(ctx, t, payload)
}

// Status implements httpapi.Cluster (status.go).
func (n *Node) Status(ctx context.Context) (httpapi.ClusterStatus, error) {
	return n.clusterStatus(ctx)
}

// Health implements httpapi.Healther: the node serves while its raft runs.
// (A node cut off from the leader still serves reads; /readyz tells the
// wire's load balancer about that.)
func (n *Node) Health() (string, error) {
	if n.rep.Raft.State() == raft.Shutdown {
		return "", errors.New("raft is shut down")
	}
	return n.cfg.NodeID, nil
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "unknown"
}
