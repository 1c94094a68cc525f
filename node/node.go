package node

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/actors"
	"tdb/fsm"
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
	Bootstrap      bool   // bootstrap a new cluster when the data dir is empty
	AdminKey       string // the cluster operator's key

	TLSCertFile, TLSKeyFile string // wire TLS; empty = a self-signed cert in the data dir
	RequireTLS              bool   // refuse plaintext wire clients (except AllowLoopbackPlaintext)
	AllowLoopbackPlaintext  bool   // `tdb dev`: plaintext from loopback is fine

	LogOutput io.Writer
	Raft      RaftConfig // timing knobs; addresses and dirs are filled in from above
}

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
}

// Start opens the replica, waits for a leader, and starts serving.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	logger := log.New(cfg.LogOutput, "["+cfg.NodeID+"] ", log.LstdFlags|log.Lmicroseconds)
	rc := cfg.Raft
	rc.NodeID = cfg.NodeID
	rc.Dir = filepath.Join(cfg.DataDir, "raft")
	rc.BindAddr = cfg.RaftAddr
	rc.Bootstrap = cfg.Bootstrap
	rc.LogOutput = cfg.LogOutput
	rep, err := OpenReplica(rc)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, rep: rep, logger: logger}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rep.WaitLeader(wctx); err != nil && cfg.Bootstrap {
		rep.Close()
		return nil, err
	}

	tlsCfg, err := n.tlsConfig()
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
	if n.cfg.PublicWireAddr == "" {
		n.cfg.PublicWireAddr = n.wireLn.Addr().String()
	}

	runCtx, runCancel := context.WithCancel(context.Background())
	n.cancel = runCancel
	rec := &actors.Reconciler{FSM: rep.FSM, Propose: n, IsLeader: rep.IsLeader, Logf: logger.Printf}
	n.goRun(func() { rec.Run(runCtx) })

	n.proxy = actors.NewProxy(actors.ProxyConfig{
		NodeID:                 cfg.NodeID,
		FSM:                    rep.FSM,
		TLS:                    tlsCfg,
		RequireTLS:             cfg.RequireTLS,
		AllowLoopbackPlaintext: cfg.AllowLoopbackPlaintext,
		Propose:                n,
		Logf:                   logger.Printf,
	})
	n.goRun(func() { n.proxy.Serve(runCtx, n.wireLn) })

	n.httpSrv = &http.Server{Handler: httpapi.New(n, logger.Printf), ReadHeaderTimeout: 10 * time.Second}
	n.goRun(func() {
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("http: %v", err)
		}
	})
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

// Stop stops serving and shuts raft down.
func (n *Node) Stop() error {
	n.wireLn.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.httpSrv.Shutdown(sctx)
	n.cancel()
	n.proxy.Close()
	n.wg.Wait()
	return n.rep.Close()
}

// HTTPAddr is the bound control-plane address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

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

// Apply implements httpapi.Cluster: commits through the leader.
func (n *Node) Apply(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	return n.rep.Apply(ctx, t, payload)
}

// Status implements httpapi.Cluster.
func (n *Node) Status(ctx context.Context) (httpapi.ClusterStatus, error) {
	_, leaderID := n.rep.Raft.LeaderWithID()
	st := httpapi.ClusterStatus{LeaderID: string(leaderID), NodeID: n.cfg.NodeID, AppliedIndex: n.rep.FSM.AppliedIndex()}
	cf := n.rep.Raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return st, errors.Wrap(err, "raft configuration")
	}
	for _, s := range cf.Configuration().Servers {
		ns := httpapi.NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter, Role: "follower"}
		if s.ID == leaderID {
			ns.Role = "leader"
		}
		if string(s.ID) == n.cfg.NodeID {
			ns.HTTPAddr, ns.WireAddr, ns.Alive = n.HTTPAddr(), n.BoundWireAddr(), true
			ns.RaftIndex = n.rep.FSM.AppliedIndex()
			ns.Role = stateName(n.rep.Raft.State())
		}
		st.Nodes = append(st.Nodes, ns)
	}
	return st, nil
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
