package roles

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashToken is how a console token is written in a tokens file
// (console.tokens_file): "sha256:" and the hex SHA-256 of the token. It
// lives here, with the rest of who may do what, so that `secure init`
// writes the hash without linking the console (and html/template) into
// the NATS server.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}
