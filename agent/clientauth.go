package agent

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ErrNoClientAuth is returned by Serve for a listener that is not a unix
// socket when the server has no AuthorizedKeys: only a socket's file mode
// can stand in for client authentication, a network port proves nothing.
var ErrNoClientAuth = errors.New("agent: a network listener needs authorized client keys")

// ParseAuthorizedKeys reads the gateway's link client keys in
// authorized_keys format: one key a line, blank lines and # comments
// skipped. Every other line must be a key (ssh.ParseAuthorizedKey alone
// would skip a garbled line in silence), and key options are refused: the
// agent enforces none of them, and a from="..." that looks enforced but is
// not is worse than none. An input without any key is an error.
func ParseAuthorizedKeys(data []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, _, options, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not an authorized key: %w", i+1, err)
		}
		if len(options) > 0 {
			return nil, fmt.Errorf("line %d: key options (%s) are not supported", i+1, strings.Join(options, ","))
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no authorized key")
	}
	return keys, nil
}

// publicKeyCallback admits exactly the keys in authorized. Every key is
// compared, in constant time, so the time taken tells nothing about which
// key came close.
func publicKeyCallback(authorized []ssh.PublicKey) func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
	wire := make([][]byte, len(authorized))
	for i, k := range authorized {
		wire[i] = k.Marshal()
	}
	return func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		got := key.Marshal()
		match := 0
		for _, w := range wire {
			match |= subtle.ConstantTimeCompare(got, w)
		}
		if match != 1 {
			return nil, fmt.Errorf("link client key %s is not authorized", ssh.FingerprintSHA256(key))
		}
		return &ssh.Permissions{Extensions: map[string]string{"pubkey-fp": ssh.FingerprintSHA256(key)}}, nil
	}
}
