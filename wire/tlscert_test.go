package wire

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadOrCreateCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Fatal("certificate was made again instead of reused")
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode().Perm())
	}
	leaf := second.Leaf
	if leaf == nil {
		t.Fatal("no leaf")
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(leaf.Raw)
	if got := EndPointBinding(leaf); !bytes.Equal(got, want[:]) {
		t.Fatalf("binding %x, want %x", got, want)
	}
	if cfg := ServerTLSConfig(second); cfg.MinVersion < 0x0303 {
		t.Fatal("TLS below 1.2 allowed")
	}
}

func TestEndPointBindingHashes(t *testing.T) {
	raw := []byte("certificate bytes")
	tests := []struct {
		name    string
		alg     x509.SignatureAlgorithm
		wantLen int
	}{
		{name: "sha1 uses sha256", alg: x509.SHA1WithRSA, wantLen: 32},
		{name: "md5 uses sha256", alg: x509.MD5WithRSA, wantLen: 32},
		{name: "sha256", alg: x509.ECDSAWithSHA256, wantLen: 32},
		{name: "sha384", alg: x509.SHA384WithRSA, wantLen: 48},
		{name: "sha512", alg: x509.ECDSAWithSHA512, wantLen: 64},
		{name: "ed25519 undefined", alg: x509.PureEd25519, wantLen: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EndPointBinding(&x509.Certificate{Raw: raw, SignatureAlgorithm: tt.alg})
			if len(got) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(got), tt.wantLen)
			}
		})
	}
	if EndPointBinding(nil) != nil {
		t.Fatal("nil certificate has a binding")
	}
}
