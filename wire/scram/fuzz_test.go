package scram

import (
	"testing"
)

func FuzzSCRAMClientFirst(f *testing.F) {
	f.Add(MechanismSHA256, []byte("n,,n=,r=rOprNGfwEbeRWgbNEkqO"), false)
	f.Add(MechanismSHA256Plus, []byte("p=tls-server-end-point,,n=,r=abc"), true)
	f.Add(MechanismSHA256, []byte("y,,n=user,r=abc,x=1"), true)
	f.Fuzz(func(t *testing.T, mech string, msg []byte, tls bool) {
		var binding []byte
		if tls {
			binding = make([]byte, 32)
		}
		s := NewServer([]byte("salt"), 1, nil, binding)
		first, err := s.ClientFirst(mech, msg)
		if err != nil {
			return
		}
		if len(first) < 3 || string(first[:2]) != "r=" {
			t.Fatalf("server-first %q", first)
		}
	})
}

func FuzzSCRAMClientFinal(f *testing.F) {
	const iters = 1
	salt := []byte("0123456789abcdef")
	v := NewVerifier("secret", salt, iters)
	const first = "n,,n=,r=abc"
	f.Add([]byte("c=biws,r=abcSERVER,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
	f.Add([]byte("c=biws,r=abcSERVER,x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	f.Add([]byte("c=biws,r=abcSERVER"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := NewServer(salt, iters, []Verifier{v}, nil)
		s.serverNonce = "SERVER"
		if _, err := s.ClientFirst(MechanismSHA256, []byte(first)); err != nil {
			t.Fatal(err)
		}
		matched, final, err := s.ClientFinal(msg)
		if err != nil && (matched != -1 || final != nil) {
			t.Fatalf("error %v with matched %d", err, matched)
		}
		if matched == 0 {
			t.Fatalf("fuzzer forged a proof: %q", msg)
		}
	})
}
