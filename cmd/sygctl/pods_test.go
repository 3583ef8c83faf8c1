package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/admin/api"
)

// With the Kubernetes backend the table says where each pod runs and what
// GPUs it holds; Docker's table keeps its columns.
func TestContainerTableShowsNodes(t *testing.T) {
	pod := api.ContainerInfo{Name: "sygaldry-train-alice", Project: "train", User: "alice", State: "running",
		Node: "gpu-node-3", GPUs: 2, GPUResource: "nvidia.com/gpu", Stop: api.ContainerStop{Status: "in_use"}}
	var b bytes.Buffer
	writeContainerTable(&b, []api.ContainerInfo{pod})
	head, row, _ := strings.Cut(b.String(), "\n")
	if f := strings.Fields(head); len(f) < 2 || f[len(f)-2] != "NODE" || f[len(f)-1] != "GPUS" {
		t.Errorf("header %q lacks NODE and GPUS", head)
	}
	if !strings.Contains(row, "gpu-node-3") || !strings.Contains(row, "2 nvidia.com/gpu") {
		t.Errorf("row %q lacks the node and GPUs", row)
	}
	pod.Node = ""
	b.Reset()
	writeContainerTable(&b, []api.ContainerInfo{pod})
	if strings.Contains(b.String(), "NODE") {
		t.Errorf("a Docker table grew a NODE column:\n%s", b.String())
	}
}

func TestGPUsByNode(t *testing.T) {
	rep := api.GPUReport{Available: true, Nodes: []api.NodeGPUs{{
		Node: "localhost", Resource: "nvidia.com/gpu", Capacity: 2, Allocatable: 2,
		Holders: []api.NodeGPUHolder{
			{Pod: "sygaldry-train-alice", Project: "train", User: "alice", Phase: "running", Count: 1},
			{Pod: "sygaldry-train-bob", Project: "train", User: "bob", Phase: "running", Count: 1},
		},
	}}}
	var b bytes.Buffer
	writeGPUs(&b, rep)
	out := b.String()
	for _, want := range []string{"NODE", "localhost", "nvidia.com/gpu", "sygaldry-train-alice (alice/train, 1, running)", "sygaldry-train-bob"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 4 || f[2] != "2" || f[3] != "2" {
		t.Errorf("allocatable and held are not 2 and 2:\n%s", out)
	}
}
