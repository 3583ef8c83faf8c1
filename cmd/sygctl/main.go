// Command sygctl is Sygaldry's command-line tool: `sygctl launch` starts the
// caller's project container on this host and runs a shell or a command in
// it (the seed's launcher); the admin subcommands talk to the gateway.
//
// Each subcommand lives in its own file and registers itself in commands.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. run gets the arguments after its name and
// returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(args []string, stdio stdio) int
}

// stdio is the process's standard streams, replaceable in tests.
type stdio struct {
	in       *os.File
	out, err io.Writer
}

var commands = map[string]command{}

// register adds a subcommand; each subcommand's file calls it from init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("sygctl: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func main() {
	os.Exit(run(os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}))
}

func run(args []string, s stdio) int {
	if len(args) == 0 {
		usage(s.err)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(s.out)
		return 0
	}
	args = hoistGlobalFlags(args)
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(s.err, "sygctl: unknown command %q\n", args[0])
		usage(s.err)
		return 2
	}
	return c.run(args[1:], s)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: sygctl COMMAND [flags] [args]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'sygctl COMMAND -h' for a command's flags.\n")
	io.WriteString(w, b.String())
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
