package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"
)

// Raft traffic between nodes carries every metadata write, SCRAM verifiers
// and backend role passwords included, so with a cluster secret it runs
// over mutually authenticated TLS: every node derives the same Ed25519 key
// from the secret and presents a self-signed certificate for it, and each
// side accepts only a peer that proves it holds that key (the TLS 1.3
// handshake signature). A peer without the secret cannot join, read or
// inject raft messages. Without a secret (a single node with no admin key)
// the transport is plain TCP.

// raftKey derives the cluster's raft TLS key from the cluster secret.
func raftKey(secret string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(deriveKey(secret, "tdb raft tls key v1"))
}

// raftTLSConfig is the TLS configuration of both sides of a raft connection.
func raftTLSConfig(secret string) (*tls.Config, error) {
	key := raftKey(secret)
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tdb raft"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, errors.Wrap(err, "make raft certificate")
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("raft peer sent no certificate")
		}
		cert, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return errors.Wrap(err, "raft peer certificate")
		}
		if got, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(got, pub) {
			return errors.New("raft peer does not hold this cluster's key (another --cluster-secret?)")
		}
		return nil
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
		// Chains are not used: the peer is known by the key itself.
		InsecureSkipVerify:    true,
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
	}, nil
}

// The cluster's ID (fsm.SetClusterID) travels in the TLS handshake: the
// dialing side offers it as its one application protocol (ALPN,
// clusterProto + ID), and the listening side refuses a handshake that
// offers another cluster's ID than its own. A node whose data dir was
// emptied and that was started without --join bootstraps a cluster of its
// own, with the same node ID and address; without the check, raft would
// let either cluster's leader overwrite the other's log (a node follows any
// leader of its term or a later one), and the metadata would be lost on
// one side. A node that knows no ID yet (a joiner, before its first
// entries) accepts and is accepted by any, and builds from before IDs offer
// none and ignore the offer.
const clusterProto = "tdb-raft-cluster/"

// internalProto is the application protocol of the nodes' internal HTTP
// calls (internal.go), which share the raft listener and its mutually
// authenticated TLS: followed by the dialing node's cluster ID, checked as
// raft's is. Over it the cluster secret never crosses the network; the
// public HTTP address still takes it as a bearer key from tools and from
// builds before log version 6.
const internalProto = "tdb-internal-http/"

// tlsStreamLayer is raft's stream layer over TLS.
type tlsStreamLayer struct {
	net.Listener // a protoMux: raft's connections of a TLS listener, past their handshake
	advertise    net.Addr
	config       *tls.Config
	clusterID    func() string
}

// foreignLog logs a refused cluster at most once a minute per ID.
type foreignLog struct {
	mu     sync.Mutex
	logger *log.Logger
	last   map[string]time.Time
}

func (l *foreignLog) refused(theirs, mine string, from net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[theirs]; ok && time.Since(t) < time.Minute {
		return
	}
	l.last[theirs] = time.Now()
	if theirs == "" {
		l.logger.Printf("raft: refused a connection from %s, a node that offers no cluster id (a build from before them, or a cluster that has none yet): this node bootstrapped cluster %s and admits no other until it has members. If this node's data dir was emptied and it was started without --join, stop it, empty its data dir again and start it with --join to the cluster it belongs to", from, mine)
		return
	}
	l.logger.Printf("raft: refused a connection from %s, a node of cluster %s: this node is of cluster %s. A node whose data dir was emptied and that was started without --join bootstrapped a cluster of its own; stop it, empty its data dir again and start it with --join to the cluster it belongs to", from, theirs, mine)
}

// clusterTLSConfig adds the cluster ID check to the listening side of cfg:
// admits says whether a peer of cluster theirs may talk to this node.
func clusterTLSConfig(cfg *tls.Config, admits func(theirs string) (string, bool), flog *foreignLog) *tls.Config {
	cfg = cfg.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		for _, p := range hello.SupportedProtos {
			theirs, ok := strings.CutPrefix(p, clusterProto)
			if !ok {
				theirs, ok = strings.CutPrefix(p, internalProto)
			}
			if !ok {
				continue
			}
			if mine, ok := admits(theirs); !ok {
				flog.refused(theirs, mine, hello.Conn.RemoteAddr())
				return nil, errors.Newf("raft peer is of cluster %s, this node of cluster %s", theirs, mine)
			}
			c := cfg.Clone()
			c.GetConfigForClient = nil
			c.NextProtos = []string{p}
			return c, nil
		}
		if mine, ok := admits(""); !ok {
			flog.refused("", mine, hello.Conn.RemoteAddr())
			return nil, errors.Newf("raft peer offers no cluster id, and this node bootstrapped cluster %s and is alone in it", mine)
		}
		return nil, nil
	}
	return cfg
}

// clusterCheck is what the raft transport tells and checks of clusters.
type clusterCheck interface {
	ID() string                                  // offered when dialing; "" offers none
	Admits(theirs string) (mine string, ok bool) // a peer that offered theirs
}

// newRaftTransport listens on bind and returns raft's network transport,
// over TLS when secret is set, telling and checking cluster IDs by check,
// and the listener of the internal HTTP calls that share it (nil without a
// secret).
func newRaftTransport(bind string, advertise net.Addr, secret string, check clusterCheck, logOutput io.Writer) (*raft.NetworkTransport, net.Listener, error) {
	if secret == "" {
		t, err := raft.NewTCPTransport(bind, advertise, 3, 10*time.Second, logOutput)
		return t, nil, err
	}
	cfg, err := raftTLSConfig(secret)
	if err != nil {
		return nil, nil, err
	}
	flog := &foreignLog{logger: log.New(logOutput, "", log.LstdFlags), last: map[string]time.Time{}}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, nil, errors.WithStack(err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, nil, errors.Newf("raft address %s is not one other nodes can dial: set --raft-advertise", advertise)
	}
	mux := &protoMux{raft: make(chan net.Conn), internal: make(chan net.Conn), done: make(chan struct{}), internalShut: make(chan struct{})}
	tcfg := clusterTLSConfig(cfg, check.Admits, flog)
	admit := tcfg.GetConfigForClient
	tcfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		// Once the internal server is shut (the node is stopping, raft
		// still runs), an internal call is refused in its handshake: the
		// caller knows it sent nothing and tries again, where a call
		// accepted and left unanswered has an unknown outcome.
		if mux.internalClosed() && slices.ContainsFunc(hello.SupportedProtos, func(p string) bool { return strings.HasPrefix(p, internalProto) }) {
			return nil, errors.New("internal calls closed: this node is stopping")
		}
		return admit(hello)
	}
	mux.inner = tls.NewListener(ln, tcfg)
	go mux.accept()
	stream := &tlsStreamLayer{Listener: mux, advertise: advertise, config: cfg, clusterID: check.ID}
	return raft.NewNetworkTransport(stream, 3, 10*time.Second, logOutput), mux.internalListener(), nil
}

// handshakeTimeout bounds a peer's TLS handshake on the raft listener.
const handshakeTimeout = 10 * time.Second

// protoMux splits the connections of the raft listener by the application
// protocol their handshake settled: internal HTTP calls (internalProto) go
// to the internal listener, the rest to raft. Each handshake runs on its
// own goroutine, so a slow peer holds up no other.
type protoMux struct {
	inner    net.Listener // a tls.Listener
	raft     chan net.Conn
	internal chan net.Conn
	done     chan struct{}
	once     sync.Once

	internalShut chan struct{} // closed with the internal listener
	internalOnce sync.Once
}

// internalClosed reports whether the internal listener is closed.
func (m *protoMux) internalClosed() bool {
	select {
	case <-m.internalShut:
		return true
	default:
		return false
	}
}

func (m *protoMux) accept() {
	var pause time.Duration
	for {
		c, err := m.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				m.Close()
				return
			}
			// Out of file descriptors, say: wait and go on, as raft's own
			// accept loop does.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-m.done:
				return
			case <-time.After(pause):
			}
			continue
		}
		pause = 0
		go m.route(c)
	}
}

// route finishes c's handshake and hands it to raft or the internal calls.
func (m *protoMux) route(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	var c2 net.Conn = tc
	to := m.raft
	if strings.HasPrefix(tc.ConnectionState().NegotiatedProtocol, internalProto) {
		// Not a *tls.Conn to the HTTP server: it would close a connection
		// whose application protocol it has no handler for.
		c2, to = handshaken{tc}, m.internal
	}
	shut := m.internalShut
	if to == m.raft {
		shut = nil
	}
	select {
	case to <- c2:
	case <-m.done:
		tc.Close()
	case <-shut:
		tc.Close()
	}
}

// handshaken is a TLS connection past its handshake, served as HTTP/1.1.
type handshaken struct{ net.Conn }

// Accept returns the next raft connection.
func (m *protoMux) Accept() (net.Conn, error) {
	select {
	case c := <-m.raft:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close stops both listeners.
func (m *protoMux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.inner.Close()
	})
	return err
}

func (m *protoMux) Addr() net.Addr { return m.inner.Addr() }

// internalListener is the listener of the internal HTTP calls (one per
// mux: closing it refuses internal calls for good).
func (m *protoMux) internalListener() net.Listener {
	return &internalListener{m: m}
}

type internalListener struct{ m *protoMux }

func (l *internalListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.internal:
		return c, nil
	case <-l.m.internalShut:
		return nil, net.ErrClosed
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close ends Accept and leaves the raft listener open: the transport
// closes it. Internal calls that arrive meanwhile are refused in their
// handshake.
func (l *internalListener) Close() error {
	l.m.internalOnce.Do(func() { close(l.m.internalShut) })
	return nil
}

func (l *internalListener) Addr() net.Addr { return l.m.inner.Addr() }

// internalClients are the HTTP clients of internal calls to the other
// nodes' raft listeners, over the cluster's TLS (one configuration for
// both), offering internalProto and this node's cluster ID. Any failure
// before the request is written (TCP or TLS) is a dial error: nothing was
// sent (errNotSent). reads keeps its connections for the next call: a
// catch-up at each login on a follower would otherwise cost a handshake
// each. writes opens one per call, as a write sent on a connection the
// other node closed meanwhile has an unknown outcome (see
// newInternalClient).
func internalClients(secret string, clusterID func() string) (writes, reads *http.Client, err error) {
	cfg, err := raftTLSConfig(secret)
	if err != nil {
		return nil, nil, err
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c := cfg.Clone()
		c.NextProtos = []string{internalProto + clusterID()}
		d := &tls.Dialer{Config: c}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
				return nil, err
			}
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		return conn, nil
	}
	client := func(keepAlive bool) *http.Client {
		return &http.Client{Transport: &http.Transport{
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
			DialTLSContext:      dial,
		}}
	}
	return client(false), client(true), nil
}

// Dial opens an authenticated connection to another node's raft listener,
// offering this node's cluster ID.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	cfg := l.config
	if id := l.clusterID(); id != "" {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{clusterProto + id}
	}
	c, err := tls.DialWithDialer(d, "tcp", string(address), cfg)
	if err != nil {
		return nil, errors.Wrapf(err, "raft connection to %s", address)
	}
	return c, nil
}

// Addr is the address other nodes dial.
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }
