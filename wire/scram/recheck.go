package scram

import "encoding/base64"

// Recheck checks the client's proof again, against new candidates, after
// ClientFinal matched none: the verifiers may have been stale (a key created
// on another node a moment ago). The candidates must share the salt and
// iterations sent in the server-first-message. It returns the index of the
// matching candidate and the server-final-message for it, or -1 and nil. It
// does the same constant work per candidate as ClientFinal, and may be called
// more than once.
func (s *Server) Recheck(candidates []Verifier) (matched int, serverFinal []byte) {
	if s.proof == nil {
		return -1, nil
	}
	s.candidates = candidates
	matched = s.check(s.authMessage, s.proof)
	if matched < 0 {
		return -1, nil
	}
	sig := hmacSHA256(s.candidates[matched].ServerKey, s.authMessage)
	return matched, []byte("v=" + base64.StdEncoding.EncodeToString(sig))
}
