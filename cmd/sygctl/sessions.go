package main

// sygctl sessions: the admin view of the gateway's sessions, through the
// admin API (package admin/client; never the gateway's internals).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/sessions"
)

// envAdminSocket names the admin socket when neither --socket nor --config
// does.
const envAdminSocket = "SYGALDRY_ADMIN_SOCKET"

// adminTimeout bounds one admin command (the gateway answers from memory;
// only the container list asks Docker).
const adminTimeout = 30 * time.Second

// adminNow is the clock for ages in tables; tests replace it.
var adminNow = time.Now

// adminFlags are the flags every admin subcommand takes.
type adminFlags struct {
	socket string
	config string
	json   bool
}

// declareAdmin declares the flags of an admin command that takes no others
// (containers, gpus, reload).
func declareAdmin(fs *flag.FlagSet) *adminFlags {
	af := new(adminFlags)
	af.add(fs, true)
	return af
}

// add registers the flags on fs. The current values are the defaults, so a
// subcommand's FlagSet keeps what its parent's already parsed
// (`sygctl sessions --socket S kill 7`).
func (a *adminFlags) add(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&a.socket, "socket", a.socket, "admin socket `PATH` (default: --config's server.admin_socket, else $"+envAdminSocket+", else "+client.DefaultSocket+")")
	fs.StringVar(&a.config, "config", a.config, "read server.admin_socket from the gateway config `FILE`")
	if withJSON {
		fs.BoolVar(&a.json, "json", a.json, "print JSON instead of a table")
	}
}

// client resolves the socket: --socket, else --config's admin_socket, else
// $SYGALDRY_ADMIN_SOCKET, else the default path.
func (a *adminFlags) client() (*client.Client, error) {
	switch {
	case a.socket != "":
		return client.New(a.socket), nil
	case a.config != "":
		c, err := config.Load(a.config)
		if err != nil {
			return nil, err
		}
		return client.New(c.Server.AdminSocket), nil
	case os.Getenv(envAdminSocket) != "":
		return client.New(os.Getenv(envAdminSocket)), nil
	}
	return client.New(client.DefaultSocket), nil
}

// newAdminFlagSet returns a FlagSet whose usage starts with synopsis and
// text.
func newAdminFlagSet(name, synopsis, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\n\nflags:\n", synopsis, text)
		fs.PrintDefaults()
	}
	return fs
}

// parseAdminFlags parses args, flags and operands in any order. It returns
// the operands, and -1 to go on or the exit code: 0 after -h (usage on
// stdout), 2 after a bad flag (message and usage on stderr).
func parseAdminFlags(fs *flag.FlagSet, args []string, interspersed bool, stdout, stderr io.Writer) ([]string, int) {
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	var operands []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(msg.Bytes())
			return nil, 0
		}
		if err != nil {
			stderr.Write(msg.Bytes())
			return nil, 2
		}
		args = fs.Args()
		if !interspersed || len(args) == 0 {
			return append(operands, args...), -1
		}
		operands = append(operands, args[0])
		args = args[1:]
	}
}

// parseFlagsOnly is parseAdminFlags for a command that takes no operands:
// one is a usage error (exit code 2).
func parseFlagsOnly(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	operands, code := parseAdminFlags(fs, args, true, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(operands) > 0 {
		return adminUsageError(fs, stderr, "unexpected argument %q", operands[0])
	}
	return -1
}

// adminUsageError reports a wrong operand and the usage, exit code 2.
func adminUsageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "sygctl %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.SetOutput(stderr)
	fs.Usage()
	return 2
}

// adminFail prints err for the admin and returns exit code 1.
func adminFail(stderr io.Writer, cmd string, err error) int {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "sygctl %s: the gateway did not answer within %s\n", cmd, adminTimeout)
	default:
		fmt.Fprintf(stderr, "sygctl %s: %v\n", cmd, err)
	}
	return 1
}

const sessionsHelp = `Lists the gateway's live sessions (oldest first), or with --all the
recently ended ones too. A client connection with no channel open (an
'ssh -N' tunnel, an idle ControlMaster) is listed as a row of kind
"connection" whose ID is the connection's, "c<N>". Subcommands:

  sygctl sessions kill [--conn] [--reason TEXT] [--json] ID...
                                           end live sessions (--conn: their
                                           whole connections)
  sygctl sessions history [-n 50] [--json] list ended sessions`

// declareSessionsFlags declares the flags of `sygctl sessions` on fs, with
// af's as the common ones.
func declareSessionsFlags(fs *flag.FlagSet, af *adminFlags) (all *bool, n *int) {
	af.add(fs, true)
	all = fs.Bool("all", false, "also list recently ended sessions (from the history)")
	n = fs.Int("n", 50, "with --all: show the last `N` ended sessions (0: all)")
	return all, n
}

// cmdSessions is `sygctl sessions [flags]`, `sygctl sessions kill` and
// `sygctl sessions history`.
func cmdSessions(args []string, stdout, stderr io.Writer) int {
	var af adminFlags
	fs := newAdminFlagSet("sessions", "sygctl sessions [--socket PATH | --config FILE] [--json] [--all [-n N]]", sessionsHelp)
	all, n := declareSessionsFlags(fs, &af)
	operands, code := parseAdminFlags(fs, args, false, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(operands) > 0 {
		switch operands[0] {
		case "kill":
			return sessionsKill(&af, operands[1:], stdout, stderr)
		case "history":
			return sessionsHistory(&af, operands[1:], stdout, stderr)
		case "help": // sygctl sessions help [kill|history]
			return cmdSessions(append(slices.Clone(operands[1:min(2, len(operands))]), "--help"), stdout, stderr)
		}
		return adminUsageError(fs, stderr, "unknown subcommand %q", operands[0])
	}

	cl, err := af.client()
	if err != nil {
		return adminFail(stderr, "sessions", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	live, err := cl.Sessions(ctx)
	if err != nil {
		return adminFail(stderr, "sessions", err)
	}
	if !*all {
		if af.json {
			return writeAdminJSON(stdout, stderr, live)
		}
		writeSessionTable(stdout, live, false)
		return 0
	}
	ended, err := cl.History(ctx, max(*n, 0))
	if err != nil {
		// The live list is still worth showing.
		fmt.Fprintf(stderr, "sygctl sessions: ended sessions not shown: %v\n", err)
	}
	list := append(ended, live...)
	slices.SortStableFunc(list, func(a, b client.Session) int { return a.Started.Compare(b.Started) })
	if af.json {
		return writeAdminJSON(stdout, stderr, list)
	}
	writeSessionTable(stdout, list, true)
	return 0
}

// declareKillFlags declares the flags of `sygctl sessions kill` on fs,
// with af's (already parsed by `sygctl sessions`) as the common ones.
func declareKillFlags(fs *flag.FlagSet, af *adminFlags) (reason *string, wholeConn *bool) {
	af.add(fs, true)
	reason = fs.String("reason", "", "`TEXT` the session's user is told")
	wholeConn = fs.Bool("conn", false, "end the whole client connection each ID belongs to")
	return reason, wholeConn
}

// killed is one line of `sygctl sessions kill --json`'s list: an ID given
// that was killed, and the client connection that ended with it (for
// --conn, or for a connection ID).
type killed struct {
	Killed     string `json:"killed"`
	Connection string `json:"connection,omitempty"`
}

func sessionsKill(af *adminFlags, args []string, stdout, stderr io.Writer) int {
	fs := newAdminFlagSet("sessions kill", "sygctl sessions kill [--conn] [--reason TEXT] [--json] ID...",
		"Ends live sessions. The session's user sees \"session killed by an\n"+
			"administrator\" and the reason. An ID \"c<N>\" (a row of kind\n"+
			"\"connection\") ends that client connection. With --conn, each ID's whole\n"+
			"connection ends: all its sessions and forwards, and the connection itself.\n"+
			"With --json: a list of {\"killed\": ID, \"connection\": CONN} for the IDs\n"+
			"killed; an ID that is not live is named on stderr and the exit code is 1.")
	reason, wholeConn := declareKillFlags(fs, af)
	ids, code := parseAdminFlags(fs, args, true, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(ids) == 0 {
		return adminUsageError(fs, stderr, "which session? (IDs are in 'sygctl sessions')")
	}
	cl, err := af.client()
	if err != nil {
		return adminFail(stderr, "sessions kill", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	rc := 0
	done := []killed{}
	for _, id := range ids {
		var conn string
		if *wholeConn {
			conn, err = cl.KillConn(ctx, id, *reason)
		} else {
			err = cl.Kill(ctx, id, *reason)
		}
		switch {
		case errors.Is(err, client.ErrNotFound) && *wholeConn:
			fmt.Fprintf(stderr, "sygctl sessions kill: no live connection for %s (see 'sygctl sessions')\n", termSafe(id))
			rc = 1
		case errors.Is(err, client.ErrNotFound):
			fmt.Fprintf(stderr, "sygctl sessions kill: no live session %s (see 'sygctl sessions'; ended ones are in 'sygctl sessions history')\n", termSafe(id))
			rc = 1
		case err != nil:
			if af.json && len(done) > 0 {
				writeJSON(stdout, stderr, done) // what was killed before the failure
			}
			return adminFail(stderr, "sessions kill", err)
		case af.json:
			k := killed{Killed: id, Connection: conn}
			if k.Connection == "" && sessions.IsConnID(id) {
				k.Connection = id
			}
			done = append(done, k)
		case *wholeConn && conn != id:
			fmt.Fprintf(stdout, "closed connection %s (of session %s)\n", termSafe(conn), termSafe(id))
		case *wholeConn || sessions.IsConnID(id):
			fmt.Fprintf(stdout, "closed connection %s\n", termSafe(id))
		default:
			fmt.Fprintf(stdout, "killed session %s\n", termSafe(id))
		}
	}
	if af.json {
		if code := writeJSON(stdout, stderr, done); code != 0 {
			return code
		}
	}
	return rc
}

// declareHistoryFlags declares the flags of `sygctl sessions history` on
// fs, with af's (already parsed by `sygctl sessions`) as the common ones.
func declareHistoryFlags(fs *flag.FlagSet, af *adminFlags) (n *int) {
	af.add(fs, true)
	return fs.Int("n", 50, "show the last `N` ended sessions (0: all)")
}

func sessionsHistory(af *adminFlags, args []string, stdout, stderr io.Writer) int {
	fs := newAdminFlagSet("sessions history", "sygctl sessions history [-n N] [--json]",
		"Lists the last N ended sessions, oldest first.")
	n := declareHistoryFlags(fs, af)
	if code := parseFlagsOnly(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *n < 0 {
		return adminUsageError(fs, stderr, "-n must be 0 (all) or more")
	}
	cl, err := af.client()
	if err != nil {
		return adminFail(stderr, "sessions history", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	list, err := cl.History(ctx, *n)
	if err != nil {
		return adminFail(stderr, "sessions history", err)
	}
	if af.json {
		return writeAdminJSON(stdout, stderr, list)
	}
	writeSessionTable(stdout, list, true)
	return 0
}

// writeAdminJSON prints list as indented JSON; nil prints as [].
func writeAdminJSON[T any](stdout, stderr io.Writer, list []T) int {
	if list == nil {
		list = []T{}
	}
	return writeJSON(stdout, stderr, list)
}

// writeJSON prints v as indented JSON, the form every --json output takes.
func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return adminFail(stderr, "json", err)
	}
	return 0
}

// sessionCommandWidth is where the table cuts a long command.
const sessionCommandWidth = 48

// writeSessionTable prints sessions as a table. withEnd adds the STATUS
// column and shows DURATION (start to end) instead of AGE.
func writeSessionTable(w io.Writer, list []client.Session, withEnd bool) {
	now := adminNow()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if withEnd {
		fmt.Fprintln(tw, "ID\tUSER\tPROJECT\tCONTAINER\tREMOTE\tKIND\tSTARTED\tDURATION\tSTATUS\tCOMMAND")
	} else {
		fmt.Fprintln(tw, "ID\tUSER\tPROJECT\tCONTAINER\tREMOTE\tKIND\tSTARTED\tAGE\tCOMMAND")
	}
	for _, s := range list {
		end := now
		if !s.Ended.IsZero() {
			end = s.Ended
		}
		cols := []string{
			s.ID, s.User, s.Project, s.Container, s.RemoteAddr, s.Kind,
			formatStarted(s.Started, now), shortDuration(end.Sub(s.Started)),
		}
		if withEnd {
			cols = append(cols, sessionStatus(s))
		}
		cols = append(cols, truncCommand(s.Command, sessionCommandWidth))
		for i, c := range cols {
			cols[i] = dashIfEmpty(termSafe(c))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
}

// sessionStatus is "live", or how an ended session ended.
func sessionStatus(s client.Session) string {
	if s.Ended.IsZero() {
		return "live"
	}
	var parts []string
	switch {
	case s.ExitSignal != "":
		parts = append(parts, "signal "+s.ExitSignal)
	case s.ExitStatus != nil:
		parts = append(parts, "exit "+strconv.Itoa(*s.ExitStatus))
	}
	if s.EndReason != "" {
		parts = append(parts, s.EndReason)
	}
	if len(parts) == 0 {
		return "ended"
	}
	return strings.Join(parts, ", ")
}

// formatStarted shows the local time of day for today, else the date too.
func formatStarted(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	if t.Year() == now.Year() {
		return t.Format("Jan 02 15:04")
	}
	return t.Format("2006-01-02 15:04")
}

// shortDuration is a short duration: 42s, 17m, 3h05m, 12d.
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// truncCommand cuts s to at most n runes, marking the cut with an ellipsis.
func truncCommand(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// termSafe makes a user-supplied string (a command, a client's address)
// safe to print on the admin's terminal: escape sequences could otherwise
// rewrite the screen, and tabs or newlines would break the table.
func termSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ':
			return '?'
		}
		return r
	}, s)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
