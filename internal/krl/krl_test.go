package krl_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/krl"
)

func requireKeygen(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ssh-keygen is not installed (required in CI)")
		}
		t.Skip("ssh-keygen is not installed")
	}
}

func keygen(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
}

// newKey writes a key pair at path and returns its public key.
func newKey(t *testing.T, path string) gossh.PublicKey {
	t.Helper()
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", filepath.Base(path), "-f", path)
	return readPub(t, path+".pub")
}

func readPub(t *testing.T, path string) gossh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pk, _, _, _, err := gossh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// signed is one certificate made by ssh-keygen -s.
type signed struct {
	path string // NAME-cert.pub
	cert *gossh.Certificate
}

func sign(t *testing.T, dir, ca, name, id string, serial uint64) signed {
	t.Helper()
	base := filepath.Join(dir, name)
	newKey(t, base)
	keygen(t, "-q", "-s", ca, "-I", id, "-n", "alice", "-z", fmt.Sprint(serial), base+".pub")
	pk := readPub(t, base+"-cert.pub")
	return signed{base + "-cert.pub", pk.(*gossh.Certificate)}
}

// revokedByOpenSSH asks ssh-keygen -Q, the reference implementation.
func revokedByOpenSSH(t *testing.T, krlPath, keyPath string) bool {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-Q", "-f", krlPath, keyPath).CombinedOutput()
	if err == nil {
		return false
	}
	if strings.Contains(string(out), "REVOKED") {
		return true
	}
	t.Fatalf("ssh-keygen -Q %s: %v\n%s", keyPath, err, out)
	return false
}

// KRLs written by ssh-keygen -k, with serial lists, ranges and bitmaps
// (ssh-keygen picks the cheapest encoding for each run of serials), key IDs,
// explicit keys, SHA256 hashes and a revoked CA: for every certificate and
// key, Parse and IsRevoked agree with ssh-keygen -Q.
func TestAgreesWithOpenSSH(t *testing.T) {
	requireKeygen(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	newKey(t, ca)
	otherCA := filepath.Join(dir, "other-ca")
	newKey(t, otherCA)
	badCA := filepath.Join(dir, "bad-ca")
	newKey(t, badCA)

	// Serials: a sparse list, a long range, and a dense irregular run that
	// ssh-keygen encodes as a bitmap.
	spec := []string{"serial: 3", "serial: 7", "serial: 1000-2000", "id: stolen-laptop"}
	for s := 64; s < 160; s++ {
		if s%3 != 0 {
			spec = append(spec, fmt.Sprintf("serial: %d", s))
		}
	}
	specPath := filepath.Join(dir, "spec")
	if err := os.WriteFile(specPath, []byte(strings.Join(spec, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plainKey := filepath.Join(dir, "plain")
	newKey(t, plainKey)
	hashedKey := filepath.Join(dir, "hashed")
	hashed := newKey(t, hashedKey)
	sum := sha256.Sum256(hashed.Marshal())
	spec2 := filepath.Join(dir, "spec2")
	if err := os.WriteFile(spec2, []byte("hash: SHA256:"+base64.RawStdEncoding.EncodeToString(sum[:])+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	krlPath := filepath.Join(dir, "revoked.krl")
	keygen(t, "-k", "-f", krlPath, "-s", ca+".pub", specPath)
	keygen(t, "-k", "-u", "-f", krlPath, plainKey+".pub", badCA+".pub", spec2)

	// ssh-keygen -k writes no CA-less section (it asks for -s with key
	// IDs), but sshd reads one as "under every CA": append one by hand.
	data, err := os.ReadFile(krlPath)
	if err != nil {
		t.Fatal(err)
	}
	sub := gossh.Marshal(struct{ ID string }{"lost-anywhere"})
	sect := append(gossh.Marshal(struct{ CA, Reserved string }{}), 0x23)
	sect = append(sect, gossh.Marshal(struct{ B []byte }{sub})...)
	data = append(data, 1)
	data = append(data, gossh.Marshal(struct{ B []byte }{sect})...)
	if err := os.WriteFile(krlPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := krl.Parse(data)
	if err != nil {
		t.Fatal(err)
	}

	var cases []string // paths of public keys and certificates
	for _, s := range []uint64{0, 1, 2, 3, 4, 7, 8, 63, 64, 65, 66, 99, 100, 101, 158, 159, 160, 999, 1000, 1500, 2000, 2001} {
		cases = append(cases, sign(t, dir, ca, fmt.Sprintf("c%d", s), fmt.Sprintf("id-%d", s), s).path)
	}
	cases = append(cases,
		sign(t, dir, ca, "stolen", "stolen-laptop", 5).path,
		sign(t, dir, otherCA, "other-serial", "ok", 3).path,            // serial 3, but another CA
		sign(t, dir, otherCA, "other-stolen", "stolen-laptop", 5).path, // key ID is per CA
		sign(t, dir, badCA, "by-bad-ca", "fine", 42).path,
		sign(t, dir, otherCA, "any-ca-id", "lost-anywhere", 9).path, // a key ID revoked under every CA
		plainKey+".pub", hashedKey+".pub", ca+".pub",
	)
	// A certificate on a revoked plain key is revoked too.
	keygen(t, "-q", "-s", ca, "-I", "plain-cert", "-n", "alice", "-z", "77777", plainKey+".pub")
	cases = append(cases, plainKey+"-cert.pub")

	revoked := 0
	for _, p := range cases {
		want := revokedByOpenSSH(t, krlPath, p)
		if want {
			revoked++
		}
		if got := k.IsRevoked(readPub(t, p)); got != want {
			t.Errorf("%s: IsRevoked = %v, ssh-keygen -Q says %v", filepath.Base(p), got, want)
		}
	}
	// The oracle must have said both things, or the test proves nothing.
	if revoked < 10 || revoked > len(cases)-8 {
		t.Fatalf("%d of %d revoked: the KRL is not what the test meant", revoked, len(cases))
	}
}

func TestParseRefusesBrokenFiles(t *testing.T) {
	requireKeygen(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	newKey(t, key)
	krlPath := filepath.Join(dir, "k.krl")
	keygen(t, "-k", "-f", krlPath, key+".pub")
	good, err := os.ReadFile(krlPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := krl.Parse(good); err != nil {
		t.Fatalf("good KRL: %v", err)
	}
	// Cut anywhere, the file is refused, except right after the header:
	// that is a valid KRL that revokes nothing (a section boundary).
	accepted := 0
	for i := len(krl.Magic); i < len(good); i++ {
		if k, err := krl.Parse(good[:i]); err == nil {
			accepted++
			if k.IsRevoked(readPub(t, key+".pub")) {
				t.Fatalf("truncated at %d of %d: still revokes", i, len(good))
			}
		}
	}
	if accepted != 1 {
		t.Fatalf("%d truncations accepted, want 1 (the header alone)", accepted)
	}
	for name, b := range map[string][]byte{
		"trailing byte":   append(append([]byte{}, good...), 0),
		"unknown section": append(append([]byte{}, good...), 9, 0, 0, 0, 0),
		"signature":       append(append([]byte{}, good...), 4, 0, 0, 0, 0),
		"critical ext":    append(append([]byte{}, good...), 255, 0, 0, 0, 10, 0, 0, 0, 1, 'x', 1, 0, 0, 0, 0),
		"not a KRL":       []byte("hello"),
	} {
		if _, err := krl.Parse(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := append(append([]byte{}, good...), 255, 0, 0, 0, 10, 0, 0, 0, 1, 'x', 0, 0, 0, 0, 0)
	if _, err := krl.Parse(ok); err != nil {
		t.Errorf("non-critical extension: %v", err)
	}
}
