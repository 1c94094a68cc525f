package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"

	"github.com/cockroachdb/errors"
)

// Mechanism names as sent in AuthenticationSASL.
const (
	MechanismSHA256     = "SCRAM-SHA-256"
	MechanismSHA256Plus = "SCRAM-SHA-256-PLUS"
)

// ChannelBindingType is the only channel binding type tdb supports.
const ChannelBindingType = "tls-server-end-point"

// serverNonceLen is the random part of the nonce, as in PostgreSQL.
const serverNonceLen = 18

// Errors returned by Server. Every error a Server returns is a protocol
// violation: the exchange is over and the connection should be closed.
var (
	// ErrMalformed reports a client message that does not follow RFC 5802.
	ErrMalformed = errors.New("malformed SCRAM message")
	// ErrChannelBinding reports a channel binding negotiation or check failure,
	// including a downgrade ("y" flag while the server offered -PLUS).
	ErrChannelBinding = errors.New("SCRAM channel binding check failed")
	// ErrState reports a step called out of order.
	ErrState = errors.New("SCRAM exchange step out of order")
)

type serverState int

const (
	stateClientFirst serverState = iota
	stateClientFinal
	stateDone
)

// Server is the server side of one SCRAM-SHA-256(-PLUS) exchange. Step it with
// ClientFirst then ClientFinal. It is not safe for concurrent use.
type Server struct {
	salt       []byte
	iterations int
	candidates []Verifier
	binding    []byte // tls-server-end-point data; nil when -PLUS is not offered

	state           serverState
	serverNonce     string // random part; set before ClientFirst (tests may preset it)
	gs2Header       string
	cbindData       []byte
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce + server nonce

	// kept after a proof matched no candidate, for Recheck
	authMessage []byte
	proof       []byte
}

// NewServer starts an exchange for candidates that all share salt and
// iterations. binding is the tls-server-end-point data of the connection, or
// nil when there is no TLS (then only SCRAM-SHA-256 may be offered).
// Zero candidates is valid: the exchange runs to the end and matches nothing.
func NewServer(salt []byte, iterations int, candidates []Verifier, binding []byte) *Server {
	return &Server{salt: salt, iterations: iterations, candidates: candidates, binding: binding}
}

// Mechanisms returns the mechanisms to offer: -PLUS first when binding data is known.
func (s *Server) Mechanisms() []string {
	if s.binding != nil {
		return []string{MechanismSHA256Plus, MechanismSHA256}
	}
	return []string{MechanismSHA256}
}

// ClientFirst takes the mechanism the client chose and its client-first-message,
// and returns the server-first-message.
func (s *Server) ClientFirst(mechanism string, msg []byte) ([]byte, error) {
	if s.state != stateClientFirst {
		return nil, ErrState
	}
	s.state = stateDone // any error ends the exchange
	switch {
	case mechanism == MechanismSHA256:
	case mechanism == MechanismSHA256Plus && s.binding != nil:
	default:
		return nil, errors.Newf("client selected an invalid SASL authentication mechanism %q", mechanism)
	}

	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	rest := msg
	var cbFlag []byte
	switch {
	case bytes.HasPrefix(rest, []byte("n,")), bytes.HasPrefix(rest, []byte("y,")):
		cbFlag, rest = rest[:1], rest[2:]
	case bytes.HasPrefix(rest, []byte("p=")):
		i := bytes.IndexByte(rest, ',')
		if i < 0 {
			return nil, errors.Wrap(ErrMalformed, "unterminated channel binding flag")
		}
		cbFlag, rest = rest[:i], rest[i+1:]
	default:
		return nil, errors.Wrap(ErrMalformed, "unexpected channel binding flag")
	}
	switch {
	case bytes.HasPrefix(rest, []byte(",")):
		rest = rest[1:]
	case bytes.HasPrefix(rest, []byte("a=")):
		return nil, errors.Wrap(ErrMalformed, "authorization identity is not supported")
	default:
		return nil, errors.Wrap(ErrMalformed, "expected end of GS2 header")
	}
	gs2Len := len(msg) - len(rest)

	switch {
	case cbFlag[0] == 'n':
		if mechanism == MechanismSHA256Plus {
			return nil, errors.Wrap(ErrChannelBinding, "client selected SCRAM-SHA-256-PLUS without channel binding")
		}
	case cbFlag[0] == 'y':
		if mechanism == MechanismSHA256Plus {
			return nil, errors.Wrap(ErrChannelBinding, "client selected SCRAM-SHA-256-PLUS without channel binding")
		}
		if s.binding != nil {
			return nil, errors.Wrap(ErrChannelBinding,
				"the client supports SCRAM channel binding but thinks the server does not; this server does support channel binding")
		}
	default: // p=cb-name
		if mechanism != MechanismSHA256Plus {
			return nil, errors.Wrap(ErrChannelBinding, "client requested channel binding without selecting SCRAM-SHA-256-PLUS")
		}
		if string(cbFlag[2:]) != ChannelBindingType {
			return nil, errors.Wrapf(ErrChannelBinding, "unsupported SCRAM channel-binding type %q", cbFlag[2:])
		}
		s.cbindData = s.binding
	}

	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	bare := rest
	if bytes.HasPrefix(rest, []byte("m=")) {
		return nil, errors.Wrap(ErrMalformed, "client requires an unsupported SCRAM extension")
	}
	// PostgreSQL ignores the SCRAM user name (libpq sends "n=") and uses the startup user.
	_, rest, ok := attr(rest, 'n')
	if !ok || rest == nil {
		return nil, errors.Wrap(ErrMalformed, "expected user name attribute")
	}
	clientNonce, rest, ok := attr(rest, 'r')
	if !ok {
		return nil, errors.Wrap(ErrMalformed, "expected nonce attribute")
	}
	if len(clientNonce) == 0 || !printable(clientNonce) {
		return nil, errors.Wrap(ErrMalformed, "invalid nonce")
	}
	if rest != nil {
		if err := extensions(rest); err != nil {
			return nil, err
		}
	}

	if s.serverNonce == "" {
		raw := make([]byte, serverNonceLen)
		_, _ = rand.Read(raw)
		s.serverNonce = base64.StdEncoding.EncodeToString(raw)
	}
	s.gs2Header = string(msg[:gs2Len])
	s.clientFirstBare = string(bare)
	s.nonce = string(clientNonce) + s.serverNonce
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.salt) +
		",i=" + strconv.Itoa(s.iterations)
	s.state = stateClientFinal
	return []byte(s.serverFirst), nil
}

// ClientFinal takes the client-final-message and checks its proof against every
// candidate. It returns the index of the matching candidate and the
// server-final-message ("v=…") for it, or -1 and nil when none matches.
// An error means the message was malformed or failed the channel binding check.
func (s *Server) ClientFinal(msg []byte) (matched int, serverFinal []byte, err error) {
	if s.state != stateClientFinal {
		return -1, nil, ErrState
	}
	s.state = stateDone

	// client-final-message-without-proof = channel-binding "," nonce ["," extensions]
	cb, rest, ok := attr(msg, 'c')
	if !ok || rest == nil {
		return -1, nil, errors.Wrap(ErrMalformed, "expected channel binding attribute")
	}
	wantCB := append([]byte(s.gs2Header), s.cbindData...)
	gotCB, err := base64.StdEncoding.Strict().DecodeString(string(cb))
	if err != nil {
		return -1, nil, errors.Wrap(ErrMalformed, "invalid channel binding encoding")
	}
	if !hmac.Equal(gotCB, wantCB) {
		return -1, nil, errors.Wrap(ErrChannelBinding, "channel binding data does not match")
	}
	nonce, rest, ok := attr(rest, 'r')
	if !ok || rest == nil {
		return -1, nil, errors.Wrap(ErrMalformed, "expected nonce attribute")
	}
	if subtle.ConstantTimeCompare(nonce, []byte(s.nonce)) != 1 {
		return -1, nil, errors.Wrap(ErrMalformed, "nonce does not match")
	}
	// Extensions may follow the nonce; the proof is always the last attribute.
	var withoutProof, proofB64 []byte
	for proofB64 == nil {
		if rest == nil {
			return -1, nil, errors.Wrap(ErrMalformed, "expected proof attribute")
		}
		if len(rest) < 2 || !isAlpha(rest[0]) || rest[1] != '=' {
			return -1, nil, errors.Wrap(ErrMalformed, "invalid attribute")
		}
		start := len(msg) - len(rest)
		val, next, _ := attr(rest, rest[0])
		if rest[0] == 'p' {
			if next != nil {
				return -1, nil, errors.Wrap(ErrMalformed, "proof is not the last attribute")
			}
			withoutProof, proofB64 = msg[:start-1], val
		}
		rest = next
	}
	proof, err := base64.StdEncoding.Strict().DecodeString(string(proofB64))
	if err != nil || len(proof) != sha256.Size {
		return -1, nil, errors.Wrap(ErrMalformed, "invalid proof")
	}

	authMessage := []byte(s.clientFirstBare + "," + s.serverFirst + "," + string(withoutProof))
	matched = s.check(authMessage, proof)
	if matched < 0 {
		s.authMessage, s.proof = authMessage, proof
		return -1, nil, nil
	}
	sig := hmacSHA256(s.candidates[matched].ServerKey, authMessage)
	return matched, []byte("v=" + base64.StdEncoding.EncodeToString(sig)), nil
}

// dummyVerifier keeps the work constant when there are no candidates.
var dummyVerifier = Verifier{StoredKey: make([]byte, sha256.Size), ServerKey: make([]byte, sha256.Size)}

// check returns the index of the first candidate the proof matches, or -1.
// It does the same work for every candidate and never exits early.
func (s *Server) check(authMessage, proof []byte) int {
	cands := s.candidates
	n := len(cands)
	if n == 0 {
		cands = []Verifier{dummyVerifier}
	}
	matched := -1
	clientKey := make([]byte, sha256.Size)
	for i, v := range cands {
		sig := hmacSHA256(v.StoredKey, authMessage)
		subtle.XORBytes(clientKey, proof, sig)
		h := sha256.Sum256(clientKey)
		ok := subtle.ConstantTimeCompare(h[:], v.StoredKey) &
			subtle.ConstantTimeLessOrEq(i+1, n) &
			subtle.ConstantTimeEq(int32(matched), -1)
		matched = subtle.ConstantTimeSelect(ok, i, matched)
	}
	return matched
}

// attr parses `k=value` followed by "," or the end of s. rest is what follows
// the comma, or nil at the end of s; ok is false when s does not start with k=.
func attr(s []byte, k byte) (value, rest []byte, ok bool) {
	if len(s) < 2 || s[0] != k || s[1] != '=' {
		return nil, nil, false
	}
	s = s[2:]
	if i := bytes.IndexByte(s, ','); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, true
}

// extensions accepts a non-empty list of `x=value` attributes, which
// RFC 5802 lets a server ignore.
func extensions(s []byte) error {
	for {
		if len(s) < 2 || !isAlpha(s[0]) || s[1] != '=' {
			return errors.Wrap(ErrMalformed, "invalid attribute")
		}
		_, next, _ := attr(s, s[0])
		if next == nil {
			return nil
		}
		s = next
	}
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// printable reports whether b holds only printable ASCII other than ",".
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}
