package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// AdminPort is the TCP port of each lab node's admin API and status page,
// on the node's own address: http://198.18.0.10K:8080/ from the client
// namespace. Reads are open there; changes need the token in TokenPath.
const AdminPort = 8080

// TokenPath is the bearer token file of every lab node's TCP admin API
// (mode 0600), written anew by each Up.
const TokenPath = StateDir + "/admin.token"

// AdminURL is node k's status page as the client namespace reaches it.
func AdminURL(k int) string { return fmt.Sprintf("http://%s:%d/", NodeIP(k), AdminPort) }

// AdminToken reads the lab's admin token.
func AdminToken() (string, error) {
	b, err := os.ReadFile(TokenPath)
	if err != nil {
		return "", fmt.Errorf("lab: admin token: %w (is the lab up?)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeToken writes a fresh random token to TokenPath.
func writeToken() error {
	b := make([]byte, 16)
	rand.Read(b)
	if err := os.WriteFile(TokenPath, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
