package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/config"
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

// Certificate extensions are what a certificate permits, as sshd reads
// them: without permit-pty no pty, without permit-port-forwarding no -L or
// -R, without permit-agent-forwarding no agent; force-command runs instead
// of what the client asked. A critical option the gateway cannot enforce
// (verify-required) refuses the certificate.
func TestCertificateExtensions(t *testing.T) {
	sshtest.Require(t, "ssh-keygen", "ssh-agent", "ssh-add")
	dir := testenv.ShortTempDir(t)
	ca, caPub := newCA(t, dir, "team-ca")
	w := newWorld(t, withServerTOML(`trusted_user_ca_keys = [`+strconvQuote(caPub)+`]`))
	ctx := ctxT(t, 4*time.Minute)
	agentSock := sshtest.StartAgent(t, ctx, w.alice)
	as := func(k sshtest.Key) sshtest.Client {
		c := w.client(k)
		c.AgentSock = agentSock
		return c
	}
	full := as(certKey(t, dir, "bob-full", ca, "-n", "bob"))
	sshtest.Must(t, full.SSH(ctx, `mkdir -p ~/www && echo from-container > ~/www/index.html && cd ~/www && { nohup python3 -m http.server --bind 127.0.0.1 8765 >/dev/null 2>&1 & } && sleep 0.5`), nil)

	type outcome struct{ pty, local, remote, agent bool }
	for _, tc := range []struct {
		name string
		opts []string
		want outcome
	}{
		{"default extensions", nil, outcome{true, true, true, true}},
		{"no-pty", []string{"-O", "no-pty"}, outcome{false, true, true, true}},
		{"no-port-forwarding", []string{"-O", "no-port-forwarding"}, outcome{true, false, false, true}},
		{"no-agent-forwarding", []string{"-O", "no-agent-forwarding"}, outcome{true, true, true, false}},
		{"clear", []string{"-O", "clear"}, outcome{false, false, false, false}},
		{"clear,permit-pty", []string{"-O", "clear", "-O", "permit-pty"}, outcome{true, false, false, false}},
	} {
		name := "bob-" + strings.ReplaceAll(tc.name, " ", "-")
		c := as(certKey(t, dir, strings.ReplaceAll(name, ",", "-"), ca, append([]string{"-n", "bob"}, tc.opts...)...))
		got := outcome{
			pty:    hasPTY(t, ctx, c),
			local:  localForwardWorks(t, ctx, c),
			remote: remoteForwardWorks(t, ctx, c),
			agent:  agentInSession(t, ctx, c),
		}
		if got != tc.want {
			t.Errorf("%s: pty, -L, -R, -A = %+v, want %+v", tc.name, got, tc.want)
		}
	}

	forced := w.client(certKey(t, dir, "bob-forced", ca, "-n", "bob", "-O", "force-command=echo forced:$SSH_ORIGINAL_COMMAND"))
	if r := sshtest.Run(t, forced.SSH(ctx, "echo asked"), nil); r.Code != 0 || r.Stdout != "forced:echo asked\n" {
		t.Errorf("force-command: %v", r)
	}
	verify := w.client(certKey(t, dir, "bob-verify", ca, "-n", "bob", "-O", "verify-required"))
	if r := sshtest.Run(t, verify.SSH(ctx, "true"), nil); !refused(r) {
		t.Errorf("verify-required: %v, want refused", r)
	}
}

// server.revoked_keys, a KRL from ssh-keygen -k or a plain file of keys, is
// checked at every login and re-read on reload: a revoked key, a
// certificate revoked by serial or key ID, and every certificate of a
// revoked CA are refused; a reload with a broken file is refused naming it
// and the running revocations stay.
func TestRevokedKeys(t *testing.T) {
	sshtest.Require(t, "ssh-keygen")
	dir := testenv.ShortTempDir(t)
	ca, caPub := newCA(t, dir, "team-ca")
	revoked := filepath.Join(dir, "revoked_keys")
	writeFile(t, revoked, w0Key(t, dir)) // a plain file naming an unrelated key
	w := newWorld(t, withServerTOML(`trusted_user_ca_keys = [`+strconvQuote(caPub)+`]
revoked_keys = `+strconvQuote(revoked)))
	ctx := ctxT(t, 3*time.Minute)
	login := func(k sshtest.Key) bool {
		r := sshtest.Run(t, w.client(k).SSH(ctx, "true"), nil)
		if r.Code != 0 && !refused(r) {
			t.Fatalf("login neither worked nor was refused: %v", r)
		}
		return r.Code == 0
	}
	serial5 := certKey(t, dir, "alice-s5", ca, "-n", "alice", "-z", "5")
	serial6 := certKey(t, dir, "alice-s6", ca, "-n", "alice", "-z", "6")
	lost := certKey(t, dir, "alice-lost", ca, "-n", "alice", "-z", "7")
	lostID := "alice-lost-id" // certKey's -I
	for name, k := range map[string]sshtest.Key{"bob": w.bob, "alice": w.alice, "serial 5": serial5, "serial 6": serial6, "lost": lost} {
		if !login(k) {
			t.Errorf("%s refused before any revocation", name)
		}
	}

	// A plain file, re-read on reload: bob's and alice's plain keys. The
	// reload also ends alice's live session (recheck.go asks the same
	// authorization again).
	live := startLive(t, ctx, w.client(w.alice))
	writeFile(t, revoked, "# revoked\n"+w.bob.Authorized+"\n"+w.alice.Authorized+"\n")
	w.reloadDoc(t, w.doc)
	live.wait(20 * time.Second)
	if login(w.bob) || login(w.alice) {
		t.Errorf("keys listed in the revoked-keys file still log in")
	}
	if !login(serial5) {
		t.Errorf("a certificate on an unrevoked key was refused")
	}

	// A KRL: serial 5, a key ID, bob's key.
	spec := filepath.Join(dir, "krl-spec")
	writeFile(t, spec, "serial: 5\nid: "+lostID+"\n")
	bobPub := filepath.Join(dir, "bob.pub")
	writeFile(t, bobPub, w.bob.Authorized+"\n")
	keygen(t, "-k", "-f", revoked, "-s", ca+".pub", spec)
	keygen(t, "-k", "-u", "-f", revoked, bobPub)
	w.reloadDoc(t, w.doc)
	for name, want := range map[string]struct {
		k  sshtest.Key
		ok bool
	}{
		"bob (key in KRL)":   {w.bob, false},
		"serial 5":           {serial5, false},
		"key ID":             {lost, false},
		"serial 6":           {serial6, true},
		"alice (not in KRL)": {w.alice, true},
	} {
		if got := login(want.k); got != want.ok {
			t.Errorf("KRL, %s: logged in = %v, want %v", name, got, want.ok)
		}
	}

	// The CA itself revoked: none of its certificates get in.
	writeFile(t, revoked, caPub+"\n")
	w.reloadDoc(t, w.doc)
	if login(serial6) {
		t.Errorf("a certificate of a revoked CA logged in")
	}

	// A broken file fails the reload, naming the file; what is in force stays.
	writeFile(t, revoked, "ssh-ed25519 not-a-key\n")
	_, err := config.Parse("test.toml", []byte(w.doc))
	if err == nil || !strings.Contains(err.Error(), revoked+":1") {
		t.Fatalf("reload with a broken revoked_keys: %v", err)
	}
	if login(serial6) {
		t.Errorf("the running revocations were dropped by a refused reload")
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func keygen(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
}

// w0Key is an authorized_keys line of a key nobody uses.
func w0Key(t *testing.T, dir string) string {
	return sshtest.NewKey(t, dir, "unused").Authorized + "\n"
}
