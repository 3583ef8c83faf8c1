package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
# comment
kvothe:x:1000:1000:Kvothe,,,:/home/kvothe:/bin/zsh
short:x:1001
`

func TestLookupPasswd(t *testing.T) {
	a, err := lookupPasswd(strings.NewReader(testPasswd), 1000)
	if err != nil || a != (account{name: "kvothe", home: "/home/kvothe", shell: "/bin/zsh"}) {
		t.Fatalf("got %+v, %v", a, err)
	}
	if _, err := lookupPasswd(strings.NewReader(testPasswd), 1001); !errors.Is(err, errNoPasswdEntry) {
		t.Fatalf("malformed line: err %v, want errNoPasswdEntry", err)
	}
}

func TestResolveAccountFallbacks(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	must(t, os.WriteFile(passwd, []byte(testPasswd), 0o644), "write passwd")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	for _, tc := range []struct {
		name     string
		uid      int
		override account
		env      map[string]string
		want     account
		wantErr  bool
	}{
		{"passwd", 1000, account{}, nil, account{"kvothe", "/home/kvothe", "/bin/zsh"}, false},
		{"overrides win", 1000, account{"u", "/h", "/bin/sh"}, nil, account{"u", "/h", "/bin/sh"}, false},
		{"unknown uid uses env", 4242, account{}, map[string]string{"HOME": "/work", "USER": "x"}, account{"x", "/work", "/bin/sh"}, true},
		{"unknown uid bare", 4242, account{}, nil, account{"4242", "/", "/bin/sh"}, true},
	} {
		got, err := resolveAccount(passwd, tc.uid, tc.override, env(tc.env))
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: got %+v, %v; want %+v, err=%v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSessionEnv(t *testing.T) {
	base := baseEnviron([]string{
		"PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "HOME=/wrong",
		"SYGALDRY_AGENT_INIT_CHILD=1", "SSH_AUTH_SOCK=/stale", "SYGALDRY_PROJECT_ID=zephyr",
	})
	got := sessionEnv(base, account{"kvothe", "/home/kvothe", "/bin/bash"},
		[][2]string{{"LC_ALL", "C"}, {"SYGALDRY_USER", "alice"}, {"LANG", "en_US.UTF-8"}},
		[][2]string{{"TERM", "xterm"}, {"SSH_TTY", "/dev/pts/3"}})
	want := []string{
		"PATH=/opt/bin:/usr/bin", "LANG=en_US.UTF-8", "HOME=/home/kvothe", "SYGALDRY_PROJECT_ID=zephyr",
		"USER=kvothe", "LOGNAME=kvothe", "SHELL=/bin/bash",
		"LC_ALL=C", "SYGALDRY_USER=alice", "TERM=xterm", "SSH_TTY=/dev/pts/3",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if env := sessionEnv(nil, account{"u", "/", "/bin/sh"}, nil, nil); !slices.Contains(env, "PATH="+defaultPath) {
		t.Fatalf("no default PATH: %q", env)
	}
}

func TestSignalNames(t *testing.T) {
	for name, sig := range rfcSignals {
		if got, ok := signalByName(name); !ok || got != sig {
			t.Errorf("signalByName(%q) = %v, %v", name, got, ok)
		}
		if got := exitSignalName(sig); got != name {
			t.Errorf("exitSignalName(%v) = %q, want %q", sig, got, name)
		}
	}
	if got := exitSignalName(syscall.SIGBUS); got != "SIG@openssh.com" {
		t.Errorf("non-RFC signal named %q, want sshd's SIG@openssh.com", got)
	}
	if _, ok := signalByName("SIGTERM"); ok {
		t.Error("names carry no SIG prefix on the wire (RFC 4254 §6.9)")
	}
}
