package main

// sygctl gpus: the host's GPUs as the gateway sees them through NVML.

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
)

// cmdGPUs is `sygctl gpus [flags]`.
func cmdGPUs(args []string, stdout, stderr io.Writer) int {
	return adminQuery("gpus", "sygctl gpus [--socket PATH | --config FILE] [--json]",
		"Lists the host's NVIDIA GPUs as the gateway sees them through NVML: memory,\nutilisation, temperature, health (from XID events), the containers leasing\neach (user, project, exclusive or shared) and how long they have been idle,\nand the processes on each, with their container. A holder that lost its GPUs\n(NVML: Unknown Error) or was made before leases gets a warning line under the\ntable. A host without the NVIDIA driver says so and exits 0.",
		args, stdout, stderr, (*client.Client).GPUs, writeGPUs)
}

// writeGPUs prints the table, or why there is none.
func writeGPUs(w io.Writer, rep api.GPUReport) {
	if len(rep.Nodes) > 0 {
		writeNodeGPUs(w, rep.Nodes)
		return
	}
	if rep.Available {
		writeGPUTable(w, rep)
		return
	}
	msg := rep.Message
	if msg == "" {
		msg = "no NVIDIA GPUs on this host"
	}
	fmt.Fprintln(w, termSafe(msg))
}

func writeGPUTable(w io.Writer, rep api.GPUReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tUUID\tNAME\tMEMORY\tUTIL\tTEMP\tHEALTH\tHOLDER\tIDLE\tPROCESSES")
	for _, g := range rep.GPUs {
		mem := ""
		if g.MemoryUsed != nil && g.MemoryTotal != nil {
			mem = gib(*g.MemoryUsed) + "/" + gib(*g.MemoryTotal) + "GiB"
		}
		util, temp := "", ""
		if g.Utilization != nil {
			util = strconv.FormatUint(uint64(*g.Utilization), 10) + "%"
		}
		if g.Temperature != nil {
			temp = strconv.FormatUint(uint64(*g.Temperature), 10) + "C"
		}
		health := g.Health
		if g.HealthReason != "" {
			health += " (" + g.HealthReason + ")"
		}
		procs := make([]string, 0, len(g.Processes))
		for _, p := range g.Processes {
			s := strconv.FormatUint(uint64(p.PID), 10)
			switch {
			case p.Container != "":
				s += "(" + p.Container + ")"
			case p.ContainerID != "":
				s += "(container " + shortID(p.ContainerID) + ")"
			}
			procs = append(procs, s)
		}
		holders, idle := holderCells(g.Holders)
		cols := []string{strconv.Itoa(g.Index), g.UUID, g.Name, mem, util, temp, health, holders, idle, strings.Join(procs, ",")}
		for i, col := range cols {
			cols[i] = dashIfEmpty(termSafe(col))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
	if rep.Driver != "" {
		fmt.Fprintf(w, "driver %s\n", termSafe(rep.Driver))
	}
	for _, line := range holderWarnings(rep) {
		fmt.Fprintln(w, termSafe(line))
	}
}

// holderWarnings are the lines under the table about holders that need the
// admin's attention, one per container: one that lost its GPUs (NVML), and
// one made before leases, which holds GPUs nobody leased it.
func holderWarnings(rep api.GPUReport) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range rep.GPUs {
		for _, h := range g.Holders {
			if seen[h.Container] {
				continue
			}
			switch {
			case h.NVMLLost:
				out = append(out, "warning: "+h.Container+" lost access to its GPUs (\"Failed to initialize NVML: Unknown Error\": the host's device cgroup was reset, e.g. by systemctl daemon-reload); it is recreated at a login once nobody is inside and no job runs in it")
			case h.Mode == "unknown":
				out = append(out, "warning: "+h.Container+" was made before GPU leases and may use GPUs nobody leased it; it is recreated at a login once nobody is inside and no job runs in it")
			default:
				continue
			}
			seen[h.Container] = true
		}
	}
	return out
}

// holderCells are the HOLDER and IDLE cells of a GPU's row: each container
// leasing it as "sygaldry-zephyr-bob(user=bob,project=zephyr,exclusive)"
// (",NVML LOST" added when it lost its GPUs; "unknown-lease" for a
// container made before leases),
// and how long each has been idle ("3h05m", "in use", "?" when the gateway
// does not know), in the same order; empty for a free GPU.
func holderCells(hs []api.GPUHolder) (holders, idle string) {
	names := make([]string, 0, len(hs))
	idles := make([]string, 0, len(hs))
	for _, h := range hs {
		mode := h.Mode
		if mode == "unknown" {
			mode = "unknown-lease"
		}
		if h.NVMLLost {
			mode += ",NVML LOST"
		}
		names = append(names, h.Container+"(user="+h.User+",project="+h.Project+","+mode+")")
		switch {
		case h.InUse:
			idles = append(idles, "in use")
		case h.IdleSeconds != nil:
			idles = append(idles, shortDuration(time.Duration(*h.IdleSeconds)*time.Second))
		default:
			idles = append(idles, "?")
		}
	}
	return strings.Join(names, ","), strings.Join(idles, ",")
}

// gib is bytes in GiB with one decimal.
func gib(b uint64) string {
	return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// writeNodeGPUs prints a cluster's GPUs as the scheduler counts them (the
// Kubernetes backend): per node and resource, how many there are, how many
// managed pods hold, and which.
func writeNodeGPUs(w io.Writer, nodes []api.NodeGPUs) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRESOURCE\tALLOCATABLE\tHELD\tHOLDERS")
	for _, n := range nodes {
		var held int64
		var hs []string
		for _, h := range n.Holders {
			held += h.Count
			hs = append(hs, fmt.Sprintf("%s (%s/%s, %d, %s)", h.Pod, h.User, h.Project, h.Count, h.Phase))
		}
		cols := []string{n.Node, n.Resource, strconv.FormatInt(n.Allocatable, 10), strconv.FormatInt(held, 10), strings.Join(hs, ", ")}
		for i, col := range cols {
			cols[i] = dashIfEmpty(termSafe(col))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
}
