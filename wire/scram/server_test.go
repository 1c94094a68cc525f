package scram

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// RFC 7677 section 3 test vector.
const (
	rfcPassword    = "pencil"
	rfcSaltB64     = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcIterations  = 4096
	rfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

func rfcSalt(t testing.TB) []byte {
	salt, err := base64.StdEncoding.DecodeString(rfcSaltB64)
	if err != nil {
		t.Fatal(err)
	}
	return salt
}

// clientProof computes the client proof for password, as a client does.
func clientProof(password string, salt []byte, iterations int, authMessage string) []byte {
	salted := pbkdf2Key(password, salt, iterations)
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	sig := hmacSHA256(stored[:], []byte(authMessage))
	for i := range clientKey {
		clientKey[i] ^= sig[i]
	}
	return clientKey
}

// clientFinalFor builds a client-final-message for password after serverFirst.
func clientFinalFor(password string, salt []byte, clientFirst, serverFirst, cbind string) string {
	bare := clientFirst[strings.Index(clientFirst, "n="):]
	nonce := strings.TrimPrefix(strings.Split(serverFirst, ",")[0], "r=")
	without := "c=" + base64.StdEncoding.EncodeToString([]byte(cbind)) + ",r=" + nonce
	proof := clientProof(password, salt, rfcIterations, bare+","+serverFirst+","+without)
	return without + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func TestRFC7677Vector(t *testing.T) {
	salt := rfcSalt(t)
	v := NewVerifier(rfcPassword, salt, rfcIterations)
	s := NewServer(salt, rfcIterations, []Verifier{v}, nil)
	s.serverNonce = rfcServerNonce
	first, err := s.ClientFirst(MechanismSHA256, []byte(rfcClientFirst))
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != rfcServerFirst {
		t.Fatalf("server-first = %q, want %q", first, rfcServerFirst)
	}
	matched, final, err := s.ClientFinal([]byte(rfcClientFinal))
	if err != nil {
		t.Fatal(err)
	}
	if matched != 0 || string(final) != rfcServerFinal {
		t.Fatalf("ClientFinal = %d %q, want 0 %q", matched, final, rfcServerFinal)
	}
	if got := clientFinalFor(rfcPassword, salt, rfcClientFirst, rfcServerFirst, "n,,"); got != rfcClientFinal {
		t.Fatalf("test client computes %q, want %q", got, rfcClientFinal)
	}
}

func TestCandidates(t *testing.T) {
	salt := NewSalt()
	const iters = 4096
	var cands []Verifier
	for _, pw := range []string{"sk_one", "sk_two", "sk_three", "sk_four"} {
		cands = append(cands, NewVerifier(pw, salt, iters))
	}
	tests := []struct {
		name     string
		password string
		cands    []Verifier
		want     int
	}{
		{name: "first", password: "sk_one", cands: cands, want: 0},
		{name: "third", password: "sk_three", cands: cands, want: 2},
		{name: "last", password: "sk_four", cands: cands, want: 3},
		{name: "duplicate picks first", password: "sk_two", cands: []Verifier{cands[0], cands[1], cands[1]}, want: 1},
		{name: "wrong password", password: "sk_five", cands: cands, want: -1},
		{name: "no candidates", password: "sk_one", cands: nil, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(salt, iters, tt.cands, nil)
			cf := "n,,n=,r=abcdefghijkl"
			sf, err := s.ClientFirst(MechanismSHA256, []byte(cf))
			if err != nil {
				t.Fatal(err)
			}
			matched, final, err := s.ClientFinal([]byte(clientFinalFor(tt.password, salt, cf, string(sf), "n,,")))
			if err != nil {
				t.Fatal(err)
			}
			if matched != tt.want {
				t.Fatalf("matched = %d, want %d", matched, tt.want)
			}
			if (final != nil) != (tt.want >= 0) {
				t.Fatalf("server-final = %q for matched %d", final, matched)
			}
		})
	}
}

func TestClientFirst(t *testing.T) {
	binding := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name      string
		binding   []byte
		mechanism string
		msg       string
		wantErr   bool
	}{
		{name: "n no tls", mechanism: MechanismSHA256, msg: "n,,n=,r=abc"},
		{name: "y no tls", mechanism: MechanismSHA256, msg: "y,,n=,r=abc"},
		{name: "n with tls", binding: binding, mechanism: MechanismSHA256, msg: "n,,n=,r=abc"},
		{name: "y with tls is a downgrade", binding: binding, mechanism: MechanismSHA256, msg: "y,,n=,r=abc", wantErr: true},
		{name: "plus", binding: binding, mechanism: MechanismSHA256Plus, msg: "p=tls-server-end-point,,n=,r=abc"},
		{name: "plus not offered", mechanism: MechanismSHA256Plus, msg: "p=tls-server-end-point,,n=,r=abc", wantErr: true},
		{name: "plus with n flag", binding: binding, mechanism: MechanismSHA256Plus, msg: "n,,n=,r=abc", wantErr: true},
		{name: "p flag without plus", binding: binding, mechanism: MechanismSHA256, msg: "p=tls-server-end-point,,n=,r=abc", wantErr: true},
		{name: "unknown cb type", binding: binding, mechanism: MechanismSHA256Plus, msg: "p=tls-unique,,n=,r=abc", wantErr: true},
		{name: "unknown mechanism", mechanism: "SCRAM-SHA-1", msg: "n,,n=,r=abc", wantErr: true},
		{name: "extension", mechanism: MechanismSHA256, msg: "n,,n=user,r=abc,x=1"},
		{name: "authzid", mechanism: MechanismSHA256, msg: "n,a=admin,n=,r=abc", wantErr: true},
		{name: "reserved mext", mechanism: MechanismSHA256, msg: "n,,m=x,n=,r=abc", wantErr: true},
		{name: "empty", mechanism: MechanismSHA256, msg: "", wantErr: true},
		{name: "bad flag", mechanism: MechanismSHA256, msg: "x,,n=,r=abc", wantErr: true},
		{name: "no user", mechanism: MechanismSHA256, msg: "n,,r=abc", wantErr: true},
		{name: "no nonce", mechanism: MechanismSHA256, msg: "n,,n=", wantErr: true},
		{name: "empty nonce", mechanism: MechanismSHA256, msg: "n,,n=,r=", wantErr: true},
		{name: "nonce with space", mechanism: MechanismSHA256, msg: "n,,n=,r=a c", wantErr: true},
		{name: "trailing comma", mechanism: MechanismSHA256, msg: "n,,n=,r=abc,", wantErr: true},
		{name: "bad extension", mechanism: MechanismSHA256, msg: "n,,n=,r=abc,1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer([]byte("salt"), 4096, nil, tt.binding)
			first, err := s.ClientFirst(tt.mechanism, []byte(tt.msg))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !strings.HasPrefix(string(first), "r=abc") {
				t.Fatalf("server-first %q does not extend the client nonce", first)
			}
		})
	}
}

func TestClientFinal(t *testing.T) {
	salt := []byte("0123456789abcdef")
	binding := bytes.Repeat([]byte{7}, 32)
	v := NewVerifier("secret", salt, rfcIterations)
	type step struct {
		mech, first, gs2 string
		binding          []byte
	}
	plain := step{MechanismSHA256, "n,,n=,r=abc", "n,,", nil}
	plus := step{MechanismSHA256Plus, "p=tls-server-end-point,,n=,r=abc", "p=tls-server-end-point,," + string(binding), binding}
	tests := []struct {
		name        string
		step        step
		final       func(good string) string
		wantMatched int
		wantErr     bool
	}{
		{name: "good", step: plain, final: func(g string) string { return g }, wantMatched: 0},
		{name: "good plus", step: plus, final: func(g string) string { return g }, wantMatched: 0},
		{name: "plus with wrong binding", step: plus, final: func(g string) string {
			return strings.Replace(g, "c="+base64.StdEncoding.EncodeToString([]byte(plus.gs2)), "c="+base64.StdEncoding.EncodeToString([]byte("p=tls-server-end-point,,"+strings.Repeat("x", 32))), 1)
		}, wantErr: true},
		{name: "wrong gs2 header", step: plain, final: func(g string) string { return strings.Replace(g, "c=biws", "c=eSws", 1) }, wantErr: true},
		{name: "bad base64 cbind", step: plain, final: func(g string) string { return strings.Replace(g, "c=biws", "c=biw", 1) }, wantErr: true},
		{name: "nonce mismatch", step: plain, final: func(g string) string { return strings.Replace(g, "r=abc", "r=abd", 1) }, wantErr: true},
		// Parses, but the proof was computed without the extension.
		{name: "extension before proof", step: plain, final: func(g string) string { return strings.Replace(g, ",p=", ",x=y,p=", 1) }, wantMatched: -1},
		{name: "no proof", step: plain, final: func(g string) string { return g[:strings.Index(g, ",p=")] }, wantErr: true},
		{name: "proof not last", step: plain, final: func(g string) string { return g + ",x=1" }, wantErr: true},
		{name: "short proof", step: plain, final: func(g string) string { return g[:strings.Index(g, ",p=")] + ",p=AAAA" }, wantErr: true},
		{name: "flipped proof", step: plain, final: func(g string) string {
			i := strings.Index(g, ",p=") + 3
			b := []byte(g)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}, wantMatched: -1},
		{name: "empty", step: plain, final: func(string) string { return "" }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(salt, rfcIterations, []Verifier{v}, tt.step.binding)
			sf, err := s.ClientFirst(tt.step.mech, []byte(tt.step.first))
			if err != nil {
				t.Fatal(err)
			}
			good := clientFinalFor("secret", salt, tt.step.first, string(sf), tt.step.gs2)
			msg := tt.final(good)
			matched, _, err := s.ClientFinal([]byte(msg))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ClientFinal(%q) err = %v, wantErr %v", msg, err, tt.wantErr)
			}
			if err == nil && matched != tt.wantMatched {
				t.Fatalf("matched = %d, want %d", matched, tt.wantMatched)
			}
		})
	}
}

func TestStepOrder(t *testing.T) {
	s := NewServer([]byte("salt"), 4096, nil, nil)
	if _, _, err := s.ClientFinal([]byte("c=biws,r=a,p=AAAA")); err == nil {
		t.Fatal("ClientFinal before ClientFirst succeeded")
	}
	s = NewServer([]byte("salt"), 4096, nil, nil)
	if _, err := s.ClientFirst(MechanismSHA256, []byte("n,,n=,r=abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClientFirst(MechanismSHA256, []byte("n,,n=,r=abc")); err == nil {
		t.Fatal("second ClientFirst succeeded")
	}
}

func TestFakeSalt(t *testing.T) {
	a := FakeSalt([]byte("node secret"), "tdb_00000000")
	if !bytes.Equal(a, FakeSalt([]byte("node secret"), "tdb_00000000")) {
		t.Fatal("FakeSalt is not deterministic")
	}
	if bytes.Equal(a, FakeSalt([]byte("node secret"), "tdb_00000001")) || len(a) != SaltLen {
		t.Fatalf("FakeSalt = %x", a)
	}
}
