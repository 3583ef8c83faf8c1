package main

// sygctl containers: the containers the gateway manages, through the admin
// API.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
)

// cmdContainers is `sygctl containers [flags]`.
func cmdContainers(args []string, stdout, stderr io.Writer) int {
	return adminQuery("containers", "sygctl containers [--socket PATH | --config FILE] [--json]",
		"Lists the containers the gateway manages, running or not. UP-TO-DATE \"no\"\nmeans the config changed: the gateway recreates it once nobody is inside.\nSTOP says when the idle stop will stop it; under each running container\nare its connections, forwards, jobs (processes other than the agent, which\npostpone the idle stop) and GPU processes.",
		args, stdout, stderr, (*client.Client).Containers, writeContainerTable)
}

// adminQuery runs an admin command that takes no operands and prints what
// one call of the admin API answers: it parses the common flags, makes the
// client, calls ask within adminTimeout, and prints the answer as JSON with
// --json, else with text. The exit code is 1 when ask fails.
func adminQuery[T any](name, usage, help string, args []string, stdout, stderr io.Writer,
	ask func(*client.Client, context.Context) (T, error), text func(io.Writer, T)) int {
	fs := newAdminFlagSet(name, usage, help)
	af := declareAdmin(fs)
	if code := parseFlagsOnly(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	cl, err := af.client()
	if err != nil {
		return adminFail(stderr, name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	v, err := ask(cl, ctx)
	switch {
	case err != nil:
		return adminFail(stderr, name, err)
	case af.json:
		return writeJSON(stdout, stderr, v)
	}
	text(stdout, v)
	return 0
}

// containerDetailJobs is how many jobs the table shows per container (the
// JSON has them all).
const containerDetailJobs = 5

// writeContainerTable prints one row per container, its last column when
// it stops, and under each running one the lines that say why it is up:
// connections, forwards, jobs and GPU processes.
func writeContainerTable(w io.Writer, list []api.ContainerInfo) {
	now := adminNow()
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	// Pods (the Kubernetes backend) also say where they run and what
	// GPUs they hold; Docker's containers all run here.
	pods := slices.ContainsFunc(list, func(c api.ContainerInfo) bool { return c.Node != "" })
	head := "NAME\tPROJECT\tUSER\tSTATE\tIMAGE\tCREATED\tUP-TO-DATE\tSESSIONS\tSTOP"
	if pods {
		head += "\tNODE\tGPUS"
	}
	fmt.Fprintln(tw, head)
	for _, c := range list {
		created := ""
		if !c.Created.IsZero() {
			created = shortDuration(now.Sub(c.Created)) + " ago"
		}
		upToDate := "no"
		if c.UpToDate {
			upToDate = "yes"
		}
		cols := []string{c.Name, c.Project, c.User, c.State, c.Image, created, upToDate, strconv.Itoa(c.Sessions), stopText(c, now)}
		if pods {
			gpus := ""
			if c.GPUs > 0 {
				gpus = strconv.FormatInt(c.GPUs, 10) + " " + c.GPUResource
			}
			cols = append(cols, c.Node, gpus)
		}
		for i, col := range cols {
			cols[i] = dashIfEmpty(termSafe(col))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
	// The details go between the aligned rows: a line without the
	// columns would split tabwriter's alignment.
	rows := strings.SplitAfter(buf.String(), "\n")
	io.WriteString(w, rows[0])
	for i, c := range list {
		io.WriteString(w, rows[i+1])
		for _, l := range containerDetails(c, now) {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

// stopText says when a container stops, for the STOP column.
func stopText(c api.ContainerInfo, now time.Time) string {
	st := c.Stop
	idle := compactDuration(time.Duration(st.IdleStopSeconds) * time.Second)
	switch st.Status {
	case api.StopInUse:
		return "in use"
	case api.StopScheduled:
		at := "soon"
		if st.At != nil {
			at = "at " + clockTime(*st.At, now)
		}
		if st.Rechecked {
			return fmt.Sprintf("stops %s (next idle check; idle_stop %s)", at, idle)
		}
		return fmt.Sprintf("stops %s (idle_stop %s after the last connection)", at, idle)
	case api.StopPostponed:
		return "stop postponed: " + plural(len(c.Jobs), "job") + " running"
	case api.StopNever:
		return "never (idle_stop = 0)"
	case api.StopUntracked:
		return "no idle timer (started outside the gateway)"
	}
	return ""
}

// containerDetails are the lines under a container's row: why it is up.
func containerDetails(c api.ContainerInfo, now time.Time) []string {
	var out []string
	safe := func(s string) string { return dashIfEmpty(termSafe(s)) }
	for _, cc := range c.Connections {
		out = append(out, fmt.Sprintf("connection %s %s from %s, %s open, last activity %s ago",
			safe(cc.Conn), safe(cc.User), safe(cc.RemoteAddr), plural(cc.Channels, "channel"),
			shortDuration(now.Sub(cc.LastActive))))
	}
	for _, f := range c.Forwards {
		out = append(out, fmt.Sprintf("forward %s %s (session %s of %s), last activity %s ago",
			safe(f.Kind), safe(f.Target), safe(f.Session), safe(f.Conn), shortDuration(now.Sub(f.LastActive))))
	}
	if c.JobsError != "" {
		out = append(out, "jobs: cannot list the processes: "+termSafe(c.JobsError))
	}
	for i, j := range c.Jobs {
		if i == containerDetailJobs {
			out = append(out, fmt.Sprintf("… and %s (--json lists all)", plural(len(c.Jobs)-i, "more job")))
			break
		}
		l := "job"
		if j.PID != 0 {
			l += " " + strconv.Itoa(j.PID)
		}
		l += " " + truncCommand(safe(j.Command), sessionCommandWidth)
		if j.AgeSeconds != nil {
			l += ", running " + shortDuration(time.Duration(*j.AgeSeconds)*time.Second)
		}
		out = append(out, l)
	}
	for _, g := range c.GPUProcesses {
		l := fmt.Sprintf("gpu %d pid %d", g.GPU, g.PID)
		if g.Command != "" {
			l += " " + truncCommand(termSafe(g.Command), sessionCommandWidth)
		}
		if g.UsedMemory != nil {
			l += ", " + gib(*g.UsedMemory) + " GiB used"
		}
		out = append(out, l)
	}
	return out
}

// clockTime is the local time of day, with the date when not today.
func clockTime(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04")
	}
	return t.Format("Jan 02 15:04")
}

// compactDuration is d as the config writes it: 2h, 90m → 1h30m, 45s.
func compactDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
