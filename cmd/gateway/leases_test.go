package main

import (
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/workspace"
)

type fixedGPUs struct {
	gpus []workspace.GPU
	err  error
}

func (f fixedGPUs) GPUs() ([]workspace.GPU, error) { return f.gpus, f.err }

// The gateway refuses a config (at start and on reload) asking a host with
// 2 GPUs for 3, naming the line; a host without GPUs leaves it to the login.
func TestCheckHostGPUs(t *testing.T) {
	cfg, err := config.Parse("gw.toml", []byte("[defaults]\n\ngpus = 3\n[projects.p]\nmembers = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	two := fixedGPUs{gpus: []workspace.GPU{{UUID: "GPU-a", Index: 0, Healthy: true}, {UUID: "GPU-b", Index: 1, Healthy: true}}}
	if err := checkHostGPUs(cfg, two); err == nil || !strings.Contains(err.Error(), "gw.toml:3: project p: gpus = 3, but this host has 2 GPUs") {
		t.Errorf("err = %v", err)
	}
	if err := checkHostGPUs(cfg, fixedGPUs{err: workspace.ErrNoHostGPUs}); err != nil {
		t.Errorf("host without GPUs: %v", err)
	}
}
