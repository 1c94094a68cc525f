package scram

import (
	"crypto/pbkdf2"
	"crypto/sha256"
)

func pbkdf2Key(password string, salt []byte, iterations int) []byte {
	k, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		panic(err)
	}
	return k
}
