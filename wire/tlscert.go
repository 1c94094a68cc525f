package wire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha256" // EndPointBinding hashes
	_ "crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/errors"
)

// File names LoadOrCreateCert uses inside its directory.
const (
	CertFileName = "tls.crt"
	KeyFileName  = "tls.key"
)

// selfSignedValidity is how long a generated certificate is valid.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// LoadOrCreateCert returns the certificate in dir/tls.crt and dir/tls.key,
// first making a self-signed ECDSA P-256 one for localhost, 127.0.0.1 and ::1
// if dir holds none. The key file is written with mode 0600.
func LoadOrCreateCert(dir string) (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	if _, err := os.Stat(certFile); err == nil {
		return LoadCert(certFile, keyFile)
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, errors.Wrapf(err, "stat %s", certFile)
	}
	certPEM, keyPEM, err := selfSignedPEM()
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, errors.Wrapf(err, "create %s", dir)
	}
	// The key goes first: the certificate file's presence means both are complete.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return LoadCert(certFile, keyFile)
}

// LoadCert loads a PEM certificate chain and key, with Leaf set.
func LoadCert(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, errors.Wrapf(err, "load TLS certificate %s", certFile)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, errors.Wrapf(err, "parse TLS certificate %s", certFile)
		}
	}
	return cert, nil
}

// alpnProtocol is the ALPN protocol name of PostgreSQL (PostgreSQL 17).
const alpnProtocol = "postgresql"

// ServerTLSConfig returns a server configuration for cert: TLS 1.2 or later,
// ALPN "postgresql" as PostgreSQL 17 announces it (and as a direct TLS
// connection must negotiate).
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{alpnProtocol},
	}
}

// EndPointBinding returns the tls-server-end-point channel binding data of a
// server certificate (RFC 5929 section 4.1): its hash with SHA-256 when it is
// signed with MD5, SHA-1 or SHA-256, else with the signature's hash. It returns
// nil when the binding is undefined (e.g. Ed25519): offer no SCRAM-SHA-256-PLUS then.
func EndPointBinding(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	var h crypto.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	default:
		return nil
	}
	d := h.New()
	d.Write(cert.Raw)
	return d.Sum(nil)
}

func selfSignedPEM() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, errors.Wrap(err, "generate TLS key")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, errors.Wrap(err, "generate serial number")
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"tdb self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, errors.Wrap(err, "create self-signed certificate")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, errors.Wrap(err, "marshal TLS key")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return errors.Wrapf(err, "write %s", path)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return errors.Wrapf(err, "chmod %s", f.Name())
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return errors.Wrapf(err, "write %s", f.Name())
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return errors.Wrapf(err, "sync %s", f.Name())
	}
	if err := f.Close(); err != nil {
		return errors.Wrapf(err, "close %s", f.Name())
	}
	return errors.Wrapf(os.Rename(f.Name(), path), "rename to %s", path)
}
