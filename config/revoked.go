package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/krl"
)

// RevokedKeys is server.revoked_keys, read when the config is loaded (and so
// again on every reload), like sshd's RevokedKeys: either an OpenSSH KRL
// (`ssh-keygen -k`) or a text file of public keys, one per line.
type RevokedKeys struct {
	Path  string
	krl   *krl.KRL
	plain map[string]bool // plain key blobs of a text file
}

// ReadRevokedKeys reads a KRL or a revoked-keys text file. Every line of a
// text file must be a public key, a comment or blank: a line that is none of
// them is an error, so a typo never un-revokes a key.
func ReadRevokedKeys(path string) (*RevokedKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rk := &RevokedKeys{Path: path}
	if krl.IsKRL(data) {
		if rk.krl, err = krl.Parse(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return rk, nil
	}
	rk.plain = map[string]bool{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		t := strings.TrimSpace(string(line))
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(t))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not a public key (nor a KRL file): %v", path, i+1, err)
		}
		if c, ok := pk.(*gossh.Certificate); ok {
			pk = c.Key
		}
		rk.plain[string(pk.Marshal())] = true
	}
	return rk, nil
}

// IsRevoked reports whether key is revoked. For a certificate, its key and
// its CA key are checked too (and in a KRL, its serial and key ID).
func (rk *RevokedKeys) IsRevoked(key gossh.PublicKey) bool {
	if rk == nil {
		return false
	}
	if rk.krl != nil {
		return rk.krl.IsRevoked(key)
	}
	keys := []gossh.PublicKey{key}
	if c, ok := key.(*gossh.Certificate); ok {
		keys = []gossh.PublicKey{c.Key, c.SignatureKey}
	}
	for _, k := range keys {
		if rk.plain[string(k.Marshal())] {
			return true
		}
	}
	return false
}

// Revoked reports whether key (or, for a certificate, its key or CA) is
// listed in server.revoked_keys.
func (c *Config) Revoked(key gossh.PublicKey) bool {
	return c.revoked.IsRevoked(key)
}

// loadRevoked reads server.revoked_keys for Parse.
func (c *Config) loadRevoked() error {
	if c.Server.RevokedKeys == "" {
		return nil
	}
	rk, err := ReadRevokedKeys(c.Server.RevokedKeys)
	if err != nil {
		return fmt.Errorf("server.revoked_keys: %w", err)
	}
	c.revoked = rk
	return nil
}
