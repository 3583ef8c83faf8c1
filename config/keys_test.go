package config

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every option sshd knows is either implemented or refused at load, with
// the file and the line of the very entry.
func TestKeyOptionsRefusedWithFileLine(t *testing.T) {
	_, k := newKey(t)
	for _, tc := range []struct{ opt, want string }{
		{`permitopen="localhost:80"`, `option "permitopen" is not supported`},
		{`permitlisten="8080"`, `option "permitlisten" is not supported`},
		{`environment="A=b"`, `option "environment" is not supported`},
		{`tunnel="1"`, `option "tunnel" is not supported`},
		{`principals="alice"`, `option "principals" is not supported`},
		{`cert-authority`, `option "cert-authority" is not supported`},
		{`verify-required`, `option "verify-required" is not supported`},
		{`frobnicate`, `unknown option "frobnicate"`},
		{`from=10.0.0.1`, `value must be in double quotes`},
		{`from="10.0.0.0/33"`, `bad address/mask`},
		{`from="a",from="b"`, `more than one from=`},
		{`command="a",command="b"`, `more than one command=`},
		{`command`, `option "command" needs a value`},
		{`no-pty="x"`, `option "no-pty" takes no value`},
		{`expiry-time="2025"`, `want YYYYMMDD[HHMM[SS]][Z]`},
		{`expiry-time="20251301"`, `want YYYYMMDD`},
	} {
		doc := fmt.Sprintf("[users.alice]\nkeys = [\n  %q,\n  %q,\n]\n", k+" ok", tc.opt+" "+k)
		_, err := Parse("gw.toml", []byte(doc))
		if err == nil {
			t.Errorf("%s: accepted", tc.opt)
			continue
		}
		if !strings.Contains(err.Error(), "gw.toml:4: users.alice.keys[1]: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want gw.toml:4 and %q", tc.opt, err, tc.want)
		}
	}
}

func TestKeyOptionsParsed(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want KeyOptions
	}{
		{nil, KeyOptions{}},
		{[]string{"restrict"}, KeyOptions{NoPTY: true, NoPortForwarding: true, NoAgentForwarding: true}},
		{[]string{"restrict", "pty"}, KeyOptions{NoPortForwarding: true, NoAgentForwarding: true}},
		{[]string{"restrict", "port-forwarding", "agent-forwarding"}, KeyOptions{NoPTY: true}},
		{[]string{"pty", "restrict"}, KeyOptions{NoPTY: true, NoPortForwarding: true, NoAgentForwarding: true}},
		{[]string{"No-PTY", "no-x11-forwarding", "no-user-rc", "no-touch-required"}, KeyOptions{NoPTY: true}},
		{[]string{"no-port-forwarding", "no-agent-forwarding"}, KeyOptions{NoPortForwarding: true, NoAgentForwarding: true}},
		{[]string{`command="echo \"hi\" \\n"`}, KeyOptions{ForceCommand: true, Command: `echo "hi" \\n`}},
		{[]string{`command=""`}, KeyOptions{ForceCommand: true}},
		{[]string{`from="10.0.0.0/8,!10.1.*"`}, KeyOptions{From: "10.0.0.0/8,!10.1.*"}},
		{[]string{`expiry-time="20300102Z"`, `expiry-time="202001020304Z"`},
			KeyOptions{Expiry: time.Date(2020, 1, 2, 3, 4, 0, 0, time.UTC)}},
	} {
		got, err := ParseKeyOptions(tc.opts)
		if err != nil {
			t.Errorf("%q: %v", tc.opts, err)
			continue
		}
		if !got.Expiry.Equal(tc.want.Expiry) {
			t.Errorf("%q: expiry %v, want %v", tc.opts, got.Expiry, tc.want.Expiry)
		}
		got.Expiry, tc.want.Expiry = time.Time{}, time.Time{}
		if got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.opts, got, tc.want)
		}
	}
}

func TestExpiryTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"20260102":         time.Date(2026, 1, 2, 0, 0, 0, 0, time.Local),
		"202601021530":     time.Date(2026, 1, 2, 15, 30, 0, 0, time.Local),
		"20260102153045Z":  time.Date(2026, 1, 2, 15, 30, 45, 0, time.UTC),
		"20260102Z":        time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"2026010215304":    {},
		"2026-01-02":       {},
		"20260102153045ZZ": {},
		"":                 {},
	} {
		got, err := ParseExpiryTime(in)
		if want.IsZero() {
			if err == nil {
				t.Errorf("%q: accepted as %v", in, got)
			}
			continue
		}
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
}

// from= follows sshd's match_host_and_ip with UseDNS off.
func TestMatchFrom(t *testing.T) {
	for _, tc := range []struct {
		list, ip string
		want     bool
	}{
		{"", "192.0.2.1", true},
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.2", "127.0.0.1", false},
		{"127.0.0.0/8", "127.0.0.1", true},
		{"10.0.0.0/8", "127.0.0.1", false},
		{"127.0.0.*", "127.0.0.1", true},
		{"127.0.0.?", "127.0.0.1", true},
		{"127.0.0.??", "127.0.0.1", false},
		{"*", "127.0.0.1", true},
		{"*,!127.0.0.1", "127.0.0.1", false},
		{"!127.0.0.1,*", "127.0.0.1", false},
		{"!10.*,127.*", "127.0.0.1", true},
		{"!127.0.0.0/8", "127.0.0.1", false},
		{"!10.0.0.0/8", "127.0.0.1", false}, // a negation alone admits nobody
		{"10.0.0.1,127.0.0.1", "127.0.0.1", true},
		{"::1", "::1", true},
		{"::/0", "127.0.0.1", false},
		{"2001:db8::/32", "2001:db8::5", true},
		{"2001:DB8::*", "2001:db8::5", true},
		{"127.0.0.1,", "127.0.0.1", false}, // an empty entry is an error: refuse
		{"127.0.0.0/99", "127.0.0.1", false},
	} {
		if got := MatchFrom(tc.list, net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("MatchFrom(%q, %s) = %v, want %v", tc.list, tc.ip, got, tc.want)
		}
	}
}

// One key may have several lines with different options (sshd tries them in
// order), but never two owners.
func TestAuthorizedKeyLines(t *testing.T) {
	pk, k := newKey(t)
	doc := fmt.Sprintf("[users.alice]\nkeys = [%q, %q]\n", `from="10.0.0.0/8" `+k, `no-pty `+k)
	c, err := Parse("gw.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	lines := c.AuthorizedKeys(pk)
	if len(lines) != 2 || lines[0].Options.From != "10.0.0.0/8" || !lines[1].Options.NoPTY || lines[1].User != "alice" {
		t.Fatalf("lines: %+v", lines)
	}
	if u, ok := c.UserByKey(pk); !ok || u != "alice" {
		t.Fatalf("UserByKey: %q %v", u, ok)
	}
}

// server.revoked_keys is read at load: a text file of keys or a KRL; a
// missing or malformed file fails the load naming config file:line and the
// revoked-keys file (and its line, for a text file).
func TestRevokedKeysLoad(t *testing.T) {
	dir := t.TempDir()
	pk, k := newKey(t)
	other, _ := newKey(t)
	plain := filepath.Join(dir, "revoked")
	if err := os.WriteFile(plain, []byte("# revoked\n\n"+k+" old laptop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := func(p string) []byte {
		return []byte(fmt.Sprintf("[server]\nlisten = \"127.0.0.1:22\"\nrevoked_keys = %q\n", p))
	}
	c, err := Parse("gw.toml", doc(plain))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revoked(pk) || c.Revoked(other) {
		t.Fatalf("plain file: revoked(listed)=%v revoked(other)=%v", c.Revoked(pk), c.Revoked(other))
	}

	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte(k+"\nssh-ed25519 AAAAnot-base64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badKRL := filepath.Join(dir, "bad.krl")
	if err := os.WriteFile(badKRL, []byte("SSHKRL\n\x00\x00\x00\x00\x01trunc"), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		broken:                        broken + ":2: not a public key",
		badKRL:                        badKRL + ": KRL header",
		filepath.Join(dir, "missing"): "no such file",
		"relative/revoked":            "must be an absolute path",
	} {
		_, err := Parse("gw.toml", doc(p))
		if err == nil || !strings.Contains(err.Error(), "gw.toml:3: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want gw.toml:3 and %q", p, err, want)
		}
	}

	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ssh-keygen is not installed (required in CI)")
		}
		t.Skip("ssh-keygen is not installed")
	}
	pub := filepath.Join(dir, "k.pub")
	if err := os.WriteFile(pub, []byte(k+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	krlPath := filepath.Join(dir, "revoked.krl")
	if out, err := exec.Command("ssh-keygen", "-k", "-f", krlPath, pub).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s", err, out)
	}
	c, err = Parse("gw.toml", doc(krlPath))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revoked(pk) || c.Revoked(other) {
		t.Fatalf("KRL: revoked(listed)=%v revoked(other)=%v", c.Revoked(pk), c.Revoked(other))
	}
}

// A CA line takes no options (sshd's TrustedUserCAKeys): they would mean
// nothing, so they are refused rather than ignored.
func TestCAKeyOptionsRefused(t *testing.T) {
	_, k := newKey(t)
	doc := fmt.Sprintf("[server]\ntrusted_user_ca_keys = [\n  %q,\n  %q,\n]\n", k, `principals="alice" `+k)
	_, err := Parse("gw.toml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), `gw.toml:4: server.trusted_user_ca_keys[1]: options (principals="alice") are not supported`) {
		t.Fatalf("CA line with options: %v", err)
	}
}
