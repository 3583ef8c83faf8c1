package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
)

// runMain runs sygctl's top level with args.
func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, stdio{in: os.Stdin, out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// --help, -h and help give the usage, listing every command of the table,
// on stdout, also after the flags that may come first.
func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"-help"}, {"help"}, {"help", "--help"},
		{"--socket", "/s", "--help"}, {"--socket=/s", "-h"}, {"--config", "c.toml", "--socket", "/s", "--help"},
	} {
		code, out, errs := runMain(args...)
		if code != 0 || !strings.HasPrefix(out, "usage: sygctl ") || errs != "" {
			t.Errorf("%q: exit %d, out %q, err %q", args, code, out, errs)
			continue
		}
		for _, c := range commands {
			if !strings.Contains(out, "\n  "+c.name+" ") {
				t.Errorf("%q: usage does not list %s:\n%s", args, c.name, out)
			}
		}
	}
}

func TestTopLevelMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: sygctl "},
		{[]string{"nope"}, `sygctl: unknown command "nope"`},
		{[]string{"--json", "sessions"}, "sygctl: flag --json must follow a command"},
		{[]string{"--socket", "/s"}, "sygctl: which command? (after --socket)"},
		{[]string{"help", "nope"}, `sygctl help: unknown command "nope"`},
		{[]string{"help", "sessions", "nope"}, `sygctl help: sessions has no subcommand "nope"`},
	} {
		code, out, errs := runMain(tc.args...)
		if code != 2 || !strings.HasPrefix(errs, tc.want) || out != "" {
			t.Errorf("%q: exit %d, out %q, err %q; want exit 2 and %q", tc.args, code, out, errs, tc.want)
		}
	}
}

// Every command and subcommand of the table answers --help, -h and
// `sygctl help ...` with its own usage on stdout, and exits 0 without doing
// anything: the table and the dispatch agree.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands {
		if c.name == "help" {
			continue
		}
		paths := [][]string{{c.name}}
		for _, sc := range c.sub {
			paths = append(paths, []string{c.name, sc.name})
		}
		for _, p := range paths {
			want := "usage: sygctl " + strings.Join(p, " ")
			if p[0] == "completion" {
				want = "usage: sygctl completion"
			}
			var first string
			for _, args := range [][]string{
				append(append([]string{}, p...), "--help"),
				append(append([]string{}, p...), "-h"),
				append([]string{"help"}, p...),
				append([]string{"--config", "/nonexistent.toml", "help"}, p...),
			} {
				code, out, errs := runMain(args...)
				if code != 0 || !strings.HasPrefix(out, want) || errs != "" {
					t.Errorf("%q: exit %d, out %q, err %q; want exit 0 and %q...", args, code, out, errs, want)
				}
				if first == "" {
					first = out
				} else if out != first {
					t.Errorf("%q: a different help than %q --help", args, p)
				}
			}
		}
	}
	// The socket flags before an admin command, --help after it.
	if code, out, _ := runMain("--socket", "/s", "sessions", "--help"); code != 0 || !strings.HasPrefix(out, "usage: sygctl sessions") {
		t.Errorf("--socket S sessions --help: exit %d, %q", code, out)
	}
	if code, out, _ := runMain("sessions", "help", "kill"); code != 0 || !strings.HasPrefix(out, "usage: sygctl sessions kill") {
		t.Errorf("sessions help kill: exit %d, %q", code, out)
	}
}

// noJSON are the commands without --json, each for a reason its help gives
// (launch passes its COMMAND's output through; completion prints a script;
// help prints the usage).
var noJSON = map[string]bool{"launch": true, "completion": true, "completion bash": true, "help": true}

func TestEveryCommandHasJSON(t *testing.T) {
	check := func(name string, declare func(*flag.FlagSet)) {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		if declare != nil {
			declare(fs)
		}
		has := fs.Lookup("json") != nil
		switch {
		case noJSON[name] && has:
			t.Errorf("%s has --json now: take it off the noJSON list", name)
		case !noJSON[name] && !has:
			t.Errorf("%s has no --json", name)
		}
	}
	for _, c := range commands {
		check(c.name, c.flags)
		for _, sc := range c.sub {
			check(c.name+" "+sc.name, sc.flags)
		}
	}
	for _, name := range []string{"launch", "completion"} {
		if _, out, _ := runMain(name, "--help"); !strings.Contains(out, "no --json") && !strings.Contains(out, "There is no\n--json") {
			t.Errorf("%s --help does not say why it has no --json:\n%s", name, out)
		}
	}
}
