package agent

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sygaldry/sygaldry/internal/ports"
)

// The listening ports of the container (issue 9), two ways: the user's
// command `sygaldry ports [--json]` (the agent binary, mounted into the
// container as /usr/local/bin/sygaldry, answers to that name), and a few
// lines at the start of an interactive login.

// CommandName is the name the agent binary answers to as the user's command.
const CommandName = "sygaldry"

const commandUsage = `usage: sygaldry ports [--json]
  Lists the TCP ports listening in this container, the process holding each,
  and the ssh command that forwards it to your machine. --json prints
  [{"port", "address", "process", "pid", "ssh"}].
`

// Command runs the user's `sygaldry` command (argv without the program
// name) and returns its exit code.
func Command(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	switch args[0] {
	case "ports":
		return portsCommand(args[1:], stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, commandUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "sygaldry: unknown command %q\n%s", args[0], commandUsage)
		return 2
	}
}

func portsCommand(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("sygaldry ports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, commandUsage) }
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sygaldry ports: unexpected argument %q\n%s", fs.Arg(0), commandUsage)
		return 2
	}
	ls, err := ports.List(ports.Options{Dest: getenv(ports.DestEnv), Project: getenv("SYGALDRY_PROJECT")})
	if err != nil {
		fmt.Fprintf(stderr, "sygaldry ports: %v\n", err)
		return 1
	}
	if *asJSON {
		b, err := json.MarshalIndent(ls, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "sygaldry ports: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	if len(ls) == 0 {
		fmt.Fprintln(stdout, "No TCP port is listening in this container.")
		return 0
	}
	ports.Format(stdout, ls, 0, "\n")
	return 0
}

// Bounds of the login banner: it is written into the pty before the shell
// reads anything, so it must fit the terminal's buffer and not hold the
// login up.
const (
	bannerListeners = 8    // lines after the header; then "... and N more"
	bannerBytes     = 2048 // well below a pty's 4 KiB line buffer
	bannerBudget    = 300 * time.Millisecond
)

// portsBanner is the listing shown at an interactive login, or nil when
// nothing listens (or /proc cannot be read: the banner is advice).
func portsBanner(procDir string, env []string) []byte {
	get := func(name string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		return ""
	}
	ls, err := ports.List(ports.Options{ProcDir: procDir, Dest: get(ports.DestEnv), Project: get("SYGALDRY_PROJECT"), Budget: bannerBudget})
	if err != nil || len(ls) == 0 {
		return nil
	}
	var b bytes.Buffer
	// "\n": the pty's line discipline turns it into "\r\n" (ONLCR), as for
	// everything the shell prints.
	ports.Format(&b, ls, bannerListeners, "\n")
	out := b.Bytes()
	for len(out) > bannerBytes {
		// Whole lines only: drop the last listener lines until it fits.
		i := bytes.LastIndexByte(out[:len(out)-1], '\n')
		if i < 0 {
			return nil
		}
		out = out[:i+1]
	}
	return out
}
