package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// certKey makes a fresh key and has ssh-keygen sign it with the CA at ca;
// OpenSSH's client picks up NAME-cert.pub next to the key by itself.
func certKey(t *testing.T, dir, name, ca string, signArgs ...string) sshtest.Key {
	t.Helper()
	k := sshtest.NewKey(t, dir, name)
	if err := os.WriteFile(k.Path+".pub", []byte(k.Authorized+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-q", "-s", ca, "-I", name + "-id"}, signArgs...)
	if out, err := exec.Command("ssh-keygen", append(args, k.Path+".pub")...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
	}
	return k
}

func newCA(t *testing.T, dir, name string) (path, pub string) {
	t.Helper()
	path = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(b))
}

// A certificate from a trusted CA is a user: its principal names them, and
// the usual membership rules apply. Expired, untrusted, wrong-source and
// unknown-principal certificates are refused.
func TestUserCertificates(t *testing.T) {
	sshtest.Require(t, "ssh-keygen")
	dir := testenv.ShortTempDir(t)
	ca, caPub := newCA(t, dir, "team-ca")
	rogue, _ := newCA(t, dir, "rogue-ca")
	w := newWorld(t, withServerTOML(`trusted_user_ca_keys = [`+strconvQuote(caPub)+`]`), withTailTOML("[users.dave]\n"))
	ctx := ctxT(t, 2*time.Minute)

	good := certKey(t, dir, "alice-laptop", ca, "-n", "alice", "-V", "-5m:+1h")
	r := sshtest.Run(t, w.client(good).SSH(ctx, "echo $SYGALDRY_USER"), nil)
	if r.Code != 0 || r.Stdout != "alice\n" {
		t.Fatalf("alice by certificate: %v", r)
	}
	pinned := certKey(t, dir, "alice-pinned", ca, "-n", "alice", "-O", "source-address=127.0.0.0/8")
	if r := sshtest.Run(t, w.client(pinned).SSH(ctx, "true"), nil); r.Code != 0 {
		t.Errorf("source-address matching 127.0.0.1: %v", r)
	}

	for name, k := range map[string]sshtest.Key{
		"expired":           certKey(t, dir, "alice-old", ca, "-n", "alice", "-V", "-2h:-1h"),
		"untrusted CA":      certKey(t, dir, "alice-rogue", rogue, "-n", "alice"),
		"other source":      certKey(t, dir, "alice-far", ca, "-n", "alice", "-O", "source-address=10.1.0.0/16"),
		"unknown principal": certKey(t, dir, "mallory", ca, "-n", "mallory"),
		"not a member":      certKey(t, dir, "dave", ca, "-n", "dave"),
		"host certificate":  certKey(t, dir, "alice-host", ca, "-h", "-n", "alice"),
	} {
		r := sshtest.Run(t, w.client(k).SSH(ctx, "true"), nil)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("%s: %v, want refused", name, r)
		}
	}
}

func strconvQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
