package scram

import (
	"fmt"
	"testing"
)

// BenchmarkVerifyProof measures the server's cost of checking one client
// proof against a project's keys: constant work per candidate, so it grows
// with the number of live keys.
func BenchmarkVerifyProof(b *testing.B) {
	salt := []byte("0123456789abcdef")
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("%d-keys", n), func(b *testing.B) {
			cands := make([]Verifier, n)
			for i := range cands {
				cands[i] = NewVerifier(fmt.Sprintf("tdb_%016d", i), salt, 4096)
			}
			s := NewServer(salt, 4096, cands, nil)
			auth := []byte("n=,r=abc,r=abcdef,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096,c=biws,r=abcdef")
			proof := make([]byte, 32)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.check(auth, proof)
			}
		})
	}
}
