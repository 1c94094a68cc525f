package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/cockroachdb/errors"
)

// hashState digests the serialized state. encoding/json writes map keys in
// sorted order, so equal states hash equally.
func hashState(s *State) (string, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return "", errors.Wrap(err, "marshal state")
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
