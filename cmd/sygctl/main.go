// Command sygctl is Sygaldry's command-line tool: `sygctl launch` starts the
// caller's project container on this host and runs a shell or a command in
// it (the seed's launcher); the admin subcommands talk to the gateway.
//
// Every command is one row of the table in commands: its name, summary,
// flags and subcommands. The top-level usage, `sygctl help` and the shell
// completion script are all read from that table.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one row of the command table.
type command struct {
	name    string
	summary string // one line in the usage
	// flags declares the command's flags on fs, with the same function the
	// command parses them with; help and completion read them from here.
	// nil: no flags.
	flags func(fs *flag.FlagSet)
	// sub are the subcommands: their names and flags (the parent's run
	// dispatches to them after parsing the flags they share, and its help
	// text describes them).
	sub []command
	// run gets the arguments after the command's name and returns the
	// process exit code.
	run func(args []string, s stdio) int
}

// stdio is the process's standard streams, replaceable in tests.
type stdio struct {
	in       *os.File
	out, err io.Writer
}

// commands is the command table, in the order usage lists it. It is filled
// in init, not in its declaration, only because help and completion read
// the table they are rows of (Go refuses that initialization cycle).
var commands []command

func init() {
	commands = []command{
		{name: "launch", summary: "start your project container on this host and run a shell or a command in it",
			flags: func(fs *flag.FlagSet) { declareLaunchFlags(fs) }, run: runLaunch},
		{name: "sessions", summary: "list, kill and review gateway sessions",
			flags: func(fs *flag.FlagSet) { declareSessionsFlags(fs, new(adminFlags)) },
			sub: []command{
				{name: "kill", flags: func(fs *flag.FlagSet) { declareKillFlags(fs, new(adminFlags)) }},
				{name: "history", flags: func(fs *flag.FlagSet) { declareHistoryFlags(fs, new(adminFlags)) }},
			},
			run: withStreams(cmdSessions)},
		{name: "containers", summary: "list the containers the gateway manages",
			flags: func(fs *flag.FlagSet) { declareAdmin(fs) }, run: withStreams(cmdContainers)},
		{name: "gpus", summary: "list the host's GPUs, their health and who uses them",
			flags: func(fs *flag.FlagSet) { declareAdmin(fs) }, run: withStreams(cmdGPUs)},
		{name: "reload", summary: "make the gateway reread its config; say what it applied and what needs a restart",
			flags: func(fs *flag.FlagSet) { declareAdmin(fs) }, run: withStreams(cmdReload)},
		{name: "doctor", summary: "check the host's NVIDIA driver, NVML, CUDA version and container runtime",
			flags: func(fs *flag.FlagSet) { declareDoctorFlags(fs) }, run: withStreams(cmdDoctor)},
		{name: "completion", summary: "print the shell completion script (bash)",
			sub: []command{{name: "bash"}},
			run: withStreams(cmdCompletion)},
		{name: "help", summary: "show the help of a command: sygctl help COMMAND [SUBCOMMAND]",
			run: withStreams(cmdHelp)},
	}
}

// withStreams adapts a command written against stdout and stderr.
func withStreams(f func(args []string, stdout, stderr io.Writer) int) func([]string, stdio) int {
	return func(args []string, s stdio) int { return f(args, s.out, s.err) }
}

// lookup finds name among list.
func lookup(list []command, name string) (command, bool) {
	for _, c := range list {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func main() {
	os.Exit(run(os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}))
}

func run(args []string, s stdio) int {
	if len(args) == 0 {
		usage(s.err)
		return 2
	}
	args = hoistGlobalFlags(args)
	if isHelpFlag(args[0]) {
		usage(s.out)
		return 0
	}
	c, ok := lookup(commands, args[0])
	if !ok {
		switch name, _, _ := strings.Cut(strings.TrimLeft(args[0], "-"), "="); {
		case name == "socket" || name == "config":
			fmt.Fprintf(s.err, "sygctl: which command? (after %s)\n", args[0])
		case strings.HasPrefix(args[0], "-"):
			fmt.Fprintf(s.err, "sygctl: flag %s must follow a command (only --socket and --config may come before it)\n", args[0])
		default:
			fmt.Fprintf(s.err, "sygctl: unknown command %q\n", args[0])
		}
		usage(s.err)
		return 2
	}
	return c.run(args[1:], s)
}

func isHelpFlag(a string) bool {
	switch a {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: sygctl [--socket PATH | --config FILE] COMMAND [flags] [args]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'sygctl help COMMAND' (or 'sygctl COMMAND --help') for a command's flags.\n")
	io.WriteString(w, b.String())
}

// cmdHelp is `sygctl help [COMMAND [SUBCOMMAND]]`: the same text as
// `sygctl COMMAND [SUBCOMMAND] --help`.
func cmdHelp(args []string, stdout, stderr io.Writer) int {
	// --socket and --config may have come along (`sygctl --socket S help
	// sessions`); they do not matter here.
	fs := flag.NewFlagSet("help", flag.ContinueOnError)
	fs.Usage = func() { usage(fs.Output()) }
	new(adminFlags).add(fs, false)
	names, code := parseAdminFlags(fs, args, true, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(names) == 0 {
		usage(stdout)
		return 0
	}
	c, ok := lookup(commands, names[0])
	if !ok {
		fmt.Fprintf(stderr, "sygctl help: unknown command %q\n", names[0])
		usage(stderr)
		return 2
	}
	if c.name == "help" {
		usage(stdout)
		return 0
	}
	if len(names) > 1 {
		if _, ok := lookup(c.sub, names[1]); !ok {
			fmt.Fprintf(stderr, "sygctl help: %s has no subcommand %q\n", c.name, names[1])
			return 2
		}
		return c.run([]string{names[1], "--help"}, stdio{out: stdout, err: stderr})
	}
	return c.run([]string{"--help"}, stdio{out: stdout, err: stderr})
}

// hoistGlobalFlags lets --socket and --config come before the command, as
// people type them (`sygctl --socket S sessions`): they are moved to just
// after the command name, where its own flag set reads them.
func hoistGlobalFlags(args []string) []string {
	var global []string
	i := 0
	for i < len(args) {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "socket" && name != "config") {
			break
		}
		if hasValue || i+1 >= len(args) {
			global = append(global, a)
			i++
			continue
		}
		global = append(global, a, args[i+1])
		i += 2
	}
	if len(global) == 0 || i >= len(args) {
		return args
	}
	out := append([]string{args[i]}, global...)
	return append(out, args[i+1:]...)
}
