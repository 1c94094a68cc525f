package scram

import "testing"

func TestRecheck(t *testing.T) {
	salt := rfcSalt(t)
	other := NewVerifier("sk_other", salt, rfcIterations)
	right := NewVerifier(rfcPassword, salt, rfcIterations)
	for _, tc := range []struct {
		name    string
		fresh   []Verifier
		matched int
	}{
		{"new key found", []Verifier{other, right}, 1},
		{"still unknown", []Verifier{other}, -1},
		{"no candidates", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(salt, rfcIterations, []Verifier{other}, nil)
			s.serverNonce = rfcServerNonce
			if _, err := s.ClientFirst(MechanismSHA256, []byte(rfcClientFirst)); err != nil {
				t.Fatal(err)
			}
			matched, _, err := s.ClientFinal([]byte(rfcClientFinal))
			if err != nil || matched != -1 {
				t.Fatalf("ClientFinal with stale candidates = %d, %v", matched, err)
			}
			matched, final := s.Recheck(tc.fresh)
			if matched != tc.matched {
				t.Fatalf("Recheck = %d, want %d", matched, tc.matched)
			}
			if matched >= 0 && string(final) != rfcServerFinal {
				t.Fatalf("server-final %q, want %q", final, rfcServerFinal)
			}
			if matched < 0 && final != nil {
				t.Fatalf("server-final %q without a match", final)
			}
		})
	}
}

func TestRecheckBeforeFinal(t *testing.T) {
	s := NewServer(rfcSalt(t), rfcIterations, nil, nil)
	if m, f := s.Recheck([]Verifier{NewVerifier(rfcPassword, rfcSalt(t), rfcIterations)}); m != -1 || f != nil {
		t.Fatalf("Recheck before any proof = %d %q", m, f)
	}
}
