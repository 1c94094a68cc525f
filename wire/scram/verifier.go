package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
)

// DefaultIterations is PostgreSQL's default scram_iterations.
const DefaultIterations = 4096

// SaltLen is the length of salts made by NewSalt and FakeSalt.
const SaltLen = 16

// Verifier is what the server stores of a secret: StoredKey = H(ClientKey)
// and ServerKey, both 32 bytes.
type Verifier struct {
	StoredKey []byte
	ServerKey []byte
}

// NewVerifier derives the verifier of password for salt and iterations
// (RFC 5802 section 3). The password is used as is (no SASLprep, see the package doc).
func NewVerifier(password string, salt []byte, iterations int) Verifier {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		// Only for FIPS-mode restrictions or a non-positive iteration count.
		panic("scram: pbkdf2: " + err.Error())
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	return Verifier{StoredKey: stored[:], ServerKey: hmacSHA256(salted, []byte("Server Key"))}
}

// NewSalt returns SaltLen random bytes.
func NewSalt() []byte {
	salt := make([]byte, SaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	return salt
}

// FakeSalt returns a salt for a user that does not exist, deterministic for a
// node secret and the user name, so repeated attempts see the same salt as they
// would for a real user and learn nothing.
func FakeSalt(secret []byte, user string) []byte {
	return hmacSHA256(secret, []byte("tdb scram fake salt\x00"+user))[:SaltLen]
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
