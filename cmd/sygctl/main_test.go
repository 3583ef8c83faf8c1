package main

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestDispatch(t *testing.T) {
	var out, errb strings.Builder
	s := stdio{in: os.Stdin, out: &out, err: &errb}
	if code := run([]string{"nope"}, s); code != 2 || !strings.Contains(errb.String(), `unknown command "nope"`) {
		t.Errorf("unknown: %d %q", code, errb.String())
	}
	if code := run([]string{"help"}, s); code != 0 || !strings.Contains(out.String(), "launch") {
		t.Errorf("help: %d %q", code, out.String())
	}
	if code := run(nil, s); code != 2 {
		t.Errorf("no args: %d", code)
	}
}

func TestShellJoin(t *testing.T) {
	args := []string{"printf", `%s|\n`, "plain", "a b", "it's", `"dq"`, "$HOME", "`id`", "", "a*b", "x;y", "-n", "semi=colon,./@%+:"}
	out, err := exec.Command("sh", "-c", shellJoin(args)).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, a := range args[2:] {
		want += a + "|\n"
	}
	if string(out) != want {
		t.Errorf("sh saw\n%s\nwant\n%s", out, want)
	}
	if got := shellJoin([]string{"ls", "-l", "/tmp"}); got != "ls -l /tmp" {
		t.Errorf("plain words quoted: %q", got)
	}
}

func TestExitCode(t *testing.T) {
	if c, err := exitCode(nil); c != 0 || err != nil {
		t.Errorf("nil: %d %v", c, err)
	}
	if c, err := exitCode(&gossh.ExitMissingError{}); c != 255 || err != nil {
		t.Errorf("missing: %d %v", c, err)
	}
	if _, err := exitCode(errors.New("connection lost")); err == nil {
		t.Error("a transport error became an exit code")
	}
}

func TestHoistGlobalFlags(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--socket", "/s", "sessions"}, []string{"sessions", "--socket", "/s"}},
		{[]string{"--socket=/s", "sessions", "kill", "3"}, []string{"sessions", "--socket=/s", "kill", "3"}},
		{[]string{"-config", "c.toml", "--socket", "/s", "containers", "--json"}, []string{"containers", "-config", "c.toml", "--socket", "/s", "--json"}},
		{[]string{"sessions", "--socket", "/s"}, []string{"sessions", "--socket", "/s"}},
		{[]string{"--socket", "/s"}, []string{"--socket", "/s"}},
		{[]string{"--json", "sessions"}, []string{"--json", "sessions"}},
	} {
		if got := hoistGlobalFlags(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("hoistGlobalFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
