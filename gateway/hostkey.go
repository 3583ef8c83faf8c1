package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// hostKeyFiles are generated on first start and reused, like sshd's
// /etc/ssh/ssh_host_*_key: a new key on every start would make every client
// shout "REMOTE HOST IDENTIFICATION HAS CHANGED".
var hostKeyFiles = []struct {
	name string
	gen  func() (crypto.Signer, error)
}{
	{"ssh_host_ed25519_key", func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}},
	{"ssh_host_ecdsa_key", func() (crypto.Signer, error) {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}},
}

// LoadHostKeys reads the host keys from dir, generating missing ones with
// mode 0600. A key file readable by others is refused, as sshd does.
func LoadHostKeys(dir string, log *slog.Logger) ([]gossh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	var out []gossh.Signer
	for _, hk := range hostKeyFiles {
		path := filepath.Join(dir, hk.name)
		s, err := loadHostKey(path)
		if errors.Is(err, fs.ErrNotExist) {
			s, err = generateHostKey(path, hk.gen)
			if err == nil {
				log.Info("generated host key", "path", path, "fingerprint", gossh.FingerprintSHA256(s.PublicKey()))
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func loadHostKey(path string) (gossh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s: permissions %04o are too open (want 0600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	s, err := gossh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return s, nil
}

func generateHostKey(path string, gen func() (crypto.Signer, error)) (gossh.Signer, error) {
	k, err := gen()
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(k, "")
	if err != nil {
		return nil, fmt.Errorf("encode host key: %w", err)
	}
	// Write to a temp file and rename, so a crash never leaves half a key.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if pub, err := gossh.NewSignerFromKey(k); err == nil {
		if err := os.WriteFile(path+".pub", gossh.MarshalAuthorizedKey(pub.PublicKey()), 0o644); err != nil {
			return nil, fmt.Errorf("write host public key: %w", err)
		}
		return pub, nil
	}
	return gossh.NewSignerFromKey(k)
}

// LinkKeyFile is the gateway's link client key in the state directory: the
// key the agents of network-reached containers (Kubernetes pods) demand.
const LinkKeyFile = "link_ed25519_key"

// LoadLinkKey reads the link client key from dir, generating it (mode 0600)
// on first start. It is kept, so pods made before a restart still accept it.
func LoadLinkKey(dir string) (gossh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	path := filepath.Join(dir, LinkKeyFile)
	s, err := loadHostKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		s, err = generateHostKey(path, hostKeyFiles[0].gen)
	}
	return s, err
}
