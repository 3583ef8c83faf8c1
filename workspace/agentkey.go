package workspace

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/link"
)

// The agent key: each container's agent proves itself to the gateway with a
// host key the gateway made for that container when it created it. The
// private half is a file in <state_dir>/keys (root's only), bind-mounted
// read-only into that container alone and owned by its user; the public half
// is the container's LabelAgentKey label. A socket in the container-writable
// link directory that leads anywhere else, say another user's agent, cannot
// present it (see package link).

// writeAgentKey makes a new ed25519 key at path (replacing any old one) and
// returns its public half in authorized_keys form, without a newline.
func writeAgentKey(path string) (string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("agent key dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("agent key dir: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate agent key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", fmt.Errorf("encode agent key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".agent-key-*")
	if err != nil {
		return "", fmt.Errorf("write agent key: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: ENOENT, ignored
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write agent key: %w", err)
	}
	if err := tmp.Chmod(0o400); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write agent key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write agent key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write agent key: %w", err)
	}
	sp, err := gossh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(sp))), nil
}

// agentKeyMatches tells whether the key file at path is the private half of
// label (a container's LabelAgentKey).
func agentKeyMatches(path, label string) bool {
	want, err := parseAgentKeyLabel(label)
	if err != nil || want == nil {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return false
	}
	return gossh.FingerprintSHA256(signer.PublicKey()) == gossh.FingerprintSHA256(want)
}

// parseAgentKeyLabel reads a LabelAgentKey value; "" (a container made
// before keys were pinned) gives nil and no error.
func parseAgentKeyLabel(label string) (gossh.PublicKey, error) {
	if label == "" {
		return nil, nil
	}
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(label))
	if err != nil {
		return nil, fmt.Errorf("label %s: %w", LabelAgentKey, err)
	}
	return pk, nil
}

// ownAgentKey hands the key file to the container user, read-only.
func ownAgentKey(path string, uid, gid int) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("agent key %s: %w", path, fs.ErrInvalid)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	return os.Chmod(path, 0o400)
}

// peer is what proves container id's agent: the pid namespace of its
// process, as the engine reports it, and its pinned key.
func (m *Manager) peer(ctx context.Context, id, name, keyLabel string) (link.Peer, error) {
	key, err := parseAgentKeyLabel(keyLabel)
	if err != nil {
		return link.Peer{}, err
	}
	ci, err := m.api.ContainerInspect(ctx, id)
	if err != nil {
		return link.Peer{}, fmt.Errorf("inspect container %s: %w", name, err)
	}
	if ci.State == nil || !ci.State.Running || ci.State.Pid <= 0 {
		return link.Peer{}, errors.New("container is not running")
	}
	ns, err := link.PidNSOf(ci.State.Pid)
	if err != nil {
		return link.Peer{}, err
	}
	return link.Peer{Container: name, PidNS: ns, ContainerID: ci.ID, HostKey: key}, nil
}
