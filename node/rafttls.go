package node

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
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

// tlsStreamLayer is raft's stream layer over TLS.
type tlsStreamLayer struct {
	net.Listener // a tls.Listener: the handshake runs on raft's per-connection goroutine
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
// over TLS when secret is set, telling and checking cluster IDs by check.
func newRaftTransport(bind string, advertise net.Addr, secret string, check clusterCheck, logOutput io.Writer) (*raft.NetworkTransport, error) {
	if secret == "" {
		return raft.NewTCPTransport(bind, advertise, 3, 10*time.Second, logOutput)
	}
	cfg, err := raftTLSConfig(secret)
	if err != nil {
		return nil, err
	}
	flog := &foreignLog{logger: log.New(logOutput, "", log.LstdFlags), last: map[string]time.Time{}}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, errors.WithStack(err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, errors.Newf("raft address %s is not one other nodes can dial: set --raft-advertise", advertise)
	}
	stream := &tlsStreamLayer{Listener: tls.NewListener(ln, clusterTLSConfig(cfg, check.Admits, flog)), advertise: advertise, config: cfg, clusterID: check.ID}
	return raft.NewNetworkTransport(stream, 3, 10*time.Second, logOutput), nil
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
