package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"tdb/fsm"
	"tdb/wire/scram"
)

// Every identifier and secret the control plane mints, from crypto/rand.

// scramIterations is the SCRAM-SHA-256 iteration count of new projects.
// Keys are minted here with 160 random bits, so key stretching adds nothing
// to their strength, while each client pays for it on every login (most of
// a login's CPU with pgbench -C). It stays at 4096 all the same: pgjdbc
// (42.5, its shaded SCRAM client) refuses a server-first message with fewer
// iterations ("iteration must be >= 4096").
const scramIterations = scram.DefaultIterations

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b)
}

// newProjectID is a project id and wire username: tdb_ + 8 hex.
func newProjectID() string { return "tdb_" + randomHex(4) }

// newProxyPassword is a project's or tenant's proxy_password: tdb_ + 16 hex.
func newProxyPassword() string { return "tdb_" + randomHex(8) }

// newAPIKeySecret is the secret of `tdb apikeys create`: sk_ + 40 hex (160 bits).
func newAPIKeySecret() string { return "sk_" + randomHex(20) }

// newKeyID is a key's public id: key_ + 12 hex.
func newKeyID() string { return "key_" + randomHex(6) }

// newSalt is a project's SCRAM salt (16 bytes), shared by all its keys.
func newSalt() []byte { return scram.NewSalt() }

// newPhysicalDatabase is the name of a new physical database: db_ + 24 hex
// (96 bits), which says nothing of its project or tenant to the other
// sessions on its backend server. With its role suffixes (_admin, …) it
// stays well below PostgreSQL's 63-byte identifiers.
func newPhysicalDatabase() string { return fsm.PhysicalPrefix + randomHex(12) }

// newRolePasswords are the passwords of a physical database's login roles.
func newRolePasswords() fsm.RolePasswords {
	return fsm.RolePasswords{Admin: randomHex(16), Write: randomHex(16), Read: randomHex(16)}
}

// lookupOf is the bearer lookup of a secret: hex SHA-256.
func lookupOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newKey builds the log form of a key: only its verifiers, never the secret.
func newKey(secret, name, role, scopeType string, values []string, salt []byte, iterations int) fsm.NewKey {
	v := scram.NewVerifier(secret, salt, iterations)
	return fsm.NewKey{
		ID: newKeyID(), Name: name, Role: role, ScopeType: scopeType, ScopeValues: slices.Clone(values),
		StoredKey: v.StoredKey, ServerKey: v.ServerKey, Lookup: lookupOf(secret),
	}
}
