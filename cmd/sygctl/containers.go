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
	return adminShow("containers", "sygctl containers [--socket PATH | --config FILE] [--json]",
		"Lists the containers the gateway manages, running or not. UP-TO-DATE \"no\"\nmeans the config changed: the gateway recreates it once nobody is inside.",
		args, stdout, stderr, func(ctx context.Context, cl *client.Client, asJSON bool) int {
			list, err := cl.Containers(ctx)
			if err != nil {
				return adminFail(stderr, "containers", err)
			}
			if asJSON {
				return writeAdminJSON(stdout, stderr, list)
			}
			writeContainerTable(stdout, list)
			return 0
		})
}

// adminShow runs an admin command that takes no operands and shows what
// one query of the admin API returns: it parses the common flags, makes
// the client, and calls show with a context bounded by adminTimeout and
// whether --json was given.
func adminShow(name, usage, help string, args []string, stdout, stderr io.Writer,
	show func(ctx context.Context, cl *client.Client, asJSON bool) int) int {
	fs := newAdminFlagSet(name, usage, help)
	af := declareAdmin(fs)
	operands, code := parseAdminFlags(fs, args, true, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(operands) > 0 {
		return adminUsageError(fs, stderr, "unexpected argument %q", operands[0])
	}
	cl, err := af.client()
	if err != nil {
		return adminFail(stderr, name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	return show(ctx, cl, af.json)
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
