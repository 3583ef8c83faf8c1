package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completer sources `sygctl completion bash` in a real bash and asks it to
// complete command lines, in a directory with known files.
type completer struct {
	t      *testing.T
	script string
	dir    string
}

func newCompleter(t *testing.T) *completer {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash on this machine")
	}
	code, out, errs := runMain("completion", "bash")
	if code != 0 || errs != "" {
		t.Fatalf("completion bash: exit %d: %s", code, errs)
	}
	dir := t.TempDir()
	script := filepath.Join(t.TempDir(), "sygctl.bash")
	for name, data := range map[string]string{script: out, filepath.Join(dir, "admin.sock"): "", filepath.Join(dir, "gateway.toml"): ""} {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &completer{t: t, script: script, dir: dir}
}

// complete returns what bash offers for the last of words (as bash splits
// them: "--socket=/x" is "--socket", "=", "/x").
func (c *completer) complete(words ...string) []string {
	c.t.Helper()
	const driver = `source "$1" || exit 1
shift
complete -p sygctl >/dev/null || exit 1
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
_sygctl
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", driver, "bash", c.script}, words...)...)
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%q: %v\n%s", words, err, out)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	slices.Sort(got)
	return got
}

func (c *completer) want(words []string, want ...string) {
	c.t.Helper()
	slices.Sort(want)
	if got := c.complete(words...); !slices.Equal(got, want) {
		c.t.Errorf("complete %q = %q, want %q", words, got, want)
	}
}

func names(list []command) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.name)
	}
	return out
}

// Commands, subcommands and flags, all from the table.
func TestCompletionFollowsTheTable(t *testing.T) {
	c := newCompleter(t)
	all := names(commands)
	c.want([]string{"sygctl", ""}, all...)
	c.want([]string{"sygctl", "help", ""}, all...)
	for _, cmd := range commands {
		c.want([]string{"sygctl", cmd.name[:2]}, filterPrefix(all, cmd.name[:2])...)
		if len(cmd.sub) > 0 {
			c.want([]string{"sygctl", cmd.name, ""}, names(cmd.sub)...)
			c.want([]string{"sygctl", "help", cmd.name, ""}, names(cmd.sub)...)
		}
		c.want([]string{"sygctl", cmd.name, "--"}, dashedFlags(cmd.flags)...)
		for _, sc := range cmd.sub {
			c.want([]string{"sygctl", cmd.name, sc.name, "--"}, dashedFlags(sc.flags)...)
		}
	}
}

func filterPrefix(list []string, prefix string) []string {
	var out []string
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// dashedFlags is what completing "--" offers: every flag taking two dashes
// (one-letter flags have one), and --help.
func dashedFlags(declare func(*flag.FlagSet)) []string {
	var out []string
	for _, f := range flagsOf(declare) {
		if len(f.Name) > 1 {
			out = append(out, "--"+f.Name)
		}
	}
	return append(out, "--help")
}

func TestCompletionCases(t *testing.T) {
	c := newCompleter(t)
	// Flags of their own place, not their neighbours'.
	c.want([]string{"sygctl", "sessions", "kill", "--r"}, "--reason")
	c.want([]string{"sygctl", "sessions", "--a"}, "--all")
	c.want([]string{"sygctl", "sessions", "kill", "--a"})
	c.want([]string{"sygctl", "gpus", "--j"}, "--json")
	c.want([]string{"sygctl", "-"}, "--socket", "--config", "--help")
	// The flags that may come first, and flag values, are skipped over.
	c.want([]string{"sygctl", "--socket", "/s", "se"}, "sessions")
	c.want([]string{"sygctl", "--socket", "=", "/s", "gp"}, "gpus")
	c.want([]string{"sygctl", "sessions", "--socket", "/s", "k"}, "kill")
	c.want([]string{"sygctl", "sessions", "-n", "5", "h"}, "history")
	c.want([]string{"sygctl", "sessions", "--json", ""}, "kill", "history")
	// Flag values: files for a path, directories for a DIR, nothing for the rest.
	c.want([]string{"sygctl", "--socket", ""}, "admin.sock", "gateway.toml", "run")
	c.want([]string{"sygctl", "sessions", "--config", "ga"}, "gateway.toml")
	c.want([]string{"sygctl", "gpus", "--config", "=", "ga"}, "gateway.toml")
	c.want([]string{"sygctl", "gpus", "--config", "="}, "admin.sock", "gateway.toml", "run")
	c.want([]string{"sygctl", "--config", "gateway.toml", "rel"}, "reload")
	c.want([]string{"sygctl", "reload", "--"}, "--socket", "--config", "--json", "--help")
	c.want([]string{"sygctl", "launch", "--workspace", ""}, "run")
	c.want([]string{"sygctl", "sessions", "-n", ""})
	c.want([]string{"sygctl", "sessions", "kill", "--reason", ""})
	// No IDs to offer; nothing after a subcommand's operand either.
	c.want([]string{"sygctl", "sessions", "kill", ""})
	c.want([]string{"sygctl", "completion", ""}, "bash")
	c.want([]string{"sygctl", "help", "sessions", "kill", ""})
	// launch: its flags until COMMAND, then COMMAND's words (files).
	c.want([]string{"sygctl", "launch", "--w"}, "--workspace")
	c.want([]string{"sygctl", "launch", "ls", "--w"})
	c.want([]string{"sygctl", "launch", "ls", "ga"}, "gateway.toml")
	c.want([]string{"sygctl", "launch", "--", "--w"})
	if got := c.complete("sygctl", "launch", "--user", "bob", "bas"); !slices.Contains(got, "bash") {
		t.Errorf("launch COMMAND: %q, want commands such as bash", got)
	}
}
