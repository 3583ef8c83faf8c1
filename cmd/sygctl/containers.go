package main

// sygctl containers: the containers the gateway manages, through the admin
// API.

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
)

// cmdContainers is `sygctl containers [flags]`.
func cmdContainers(args []string, stdout, stderr io.Writer) int {
	return adminQuery("containers", "sygctl containers [--socket PATH | --config FILE] [--json]",
		"Lists the containers the gateway manages, running or not. UP-TO-DATE \"no\"\nmeans the config changed: the gateway recreates it once nobody is inside.",
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

func writeContainerTable(w io.Writer, list []api.ContainerInfo) {
	now := adminNow()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROJECT\tUSER\tSTATE\tIMAGE\tCREATED\tUP-TO-DATE\tSESSIONS")
	for _, c := range list {
		created := ""
		if !c.Created.IsZero() {
			created = shortDuration(now.Sub(c.Created)) + " ago"
		}
		upToDate := "no"
		if c.UpToDate {
			upToDate = "yes"
		}
		cols := []string{c.Name, c.Project, c.User, c.State, c.Image, created, upToDate, strconv.Itoa(c.Sessions)}
		for i, col := range cols {
			cols[i] = dashIfEmpty(termSafe(col))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
}
