package main

import (
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/workspace"
)

// checkHostGPUs refuses a config (at start, or a reload) whose gpus the
// host's GPUs can never satisfy, naming file:line. A host without GPUs, or
// whose GPUs cannot be read now, is not checked: a login asking for a GPU
// there gets its own refusal line.
func checkHostGPUs(cfg *config.Config, inv workspace.GPUInventory) error {
	gpus, err := inv.GPUs()
	if err != nil {
		return nil
	}
	return workspace.CheckGPUs(cfg, gpus)
}
