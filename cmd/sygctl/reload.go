package main

// sygctl reload: the gateway rereads its config, as on SIGHUP, and says
// what it applied and what waits for a restart.

import (
	"fmt"
	"io"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
)

const reloadHelp = `Makes the gateway reread its configuration file (the one it runs with),
as SIGHUP does, and prints what changed, one line per key:

  applied  KEY: RUNNING -> FILE          in force now
  needs a restart  KEY: RUNNING -> FILE  in the file, in force after a restart

then "configuration reloaded: N applied, M need a restart, K connections
ended" (connections the new config no longer admits), or "configuration
reloaded: no changes". A file with errors is refused with its file:line, the
running config stays in force, and the exit code is 1. --config only says
where the admin socket is: the gateway reads its own file.
With --json: {"applied": [{"key", "running", "file"}], "needs_restart":
[...], "connections_ended": K}.`

// cmdReload is `sygctl reload [flags]`.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	return adminQuery("reload", "sygctl reload [--socket PATH | --config FILE] [--json]", reloadHelp,
		args, stdout, stderr, (*client.Client).Reload, writeReload)
}

func writeReload(w io.Writer, rep api.ReloadReport) {
	if len(rep.Applied) == 0 && len(rep.NeedsRestart) == 0 && rep.ConnectionsEnded == 0 {
		fmt.Fprintln(w, "configuration reloaded: no changes")
		return
	}
	for _, c := range rep.Applied {
		fmt.Fprintln(w, "applied  "+changeLine(c))
	}
	for _, c := range rep.NeedsRestart {
		fmt.Fprintln(w, "needs a restart  "+changeLine(c))
	}
	restart := "need a restart"
	if len(rep.NeedsRestart) == 1 {
		restart = "needs a restart"
	}
	fmt.Fprintf(w, "configuration reloaded: %d applied, %d %s, %s ended\n",
		len(rep.Applied), len(rep.NeedsRestart), restart, plural(rep.ConnectionsEnded, "connection"))
}

// changeLine is "KEY: RUNNING -> FILE", a value the config did not set
// showing as (unset).
func changeLine(c api.ReloadChange) string {
	val := func(v string) string {
		if v == "" {
			return "(unset)"
		}
		return termSafe(v)
	}
	return termSafe(c.Key) + ": " + val(c.Running) + " -> " + val(c.File)
}

// plural is "1 connection", "2 connections".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
