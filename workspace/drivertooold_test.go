package workspace

import (
	"errors"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"strings"
	"testing"
)

// The engine's answer to ContainerStart when the NVIDIA runtime hook refuses
// a CUDA 12.9 image on an older host driver (the hook's text as the NVIDIA
// container toolkit prints it, wrapped by runc and the engine).
const driverTooOldText = "failed to create task for container: failed to create shim task: OCI runtime create failed: " +
	"runc create failed: unable to start container process: error during container init: error running prestart hook #0: " +
	"exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n" +
	"nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.9, please update your driver to a newer version, " +
	"or use an earlier cuda container: unknown"

func TestIsDriverTooOld(t *testing.T) {
	for text, want := range map[string]bool{
		driverTooOldText: true,
		"error running hook: exit status 1, stdout: , stderr: nvidia-container-cli: requirement error: unsatisfied condition: cuda >= 9.0": true,
		"could not select device driver \"nvidia\" with capabilities: [[gpu]]":                                                             false,
		"error setting rlimit type 8: operation not permitted":                                                                             false,
		"nvidia-container-cli: initialization error: nvml error: driver not loaded":                                                        false,
	} {
		if got := isDriverTooOld(errors.New(text)); got != want {
			t.Errorf("isDriverTooOld(%q) = %v, want %v", text, got, want)
		}
	}
	if isDriverTooOld(nil) {
		t.Error("isDriverTooOld(nil) = true")
	}
}

func TestDriverTooOldError(t *testing.T) {
	cause := errors.New(driverTooOldText)
	err := driverTooOldError("sygaldry-kvothe-zephyr", "zephyr:dev", cause)
	if !errors.Is(err, ErrDriverTooOld) || !errors.Is(err, cause) {
		t.Fatalf("err = %v, want ErrDriverTooOld wrapping the cause", err)
	}
	msg := usererr.Message(err)
	if strings.Contains(msg, "\n") {
		t.Errorf("message is more than one line: %q", msg)
	}
	for _, want := range []string{"sygaldry-kvothe-zephyr", "zephyr:dev", "needs CUDA 12.9", "NVIDIA driver is too old", "update the driver"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "OCI runtime") || strings.Contains(msg, "prestart hook") {
		t.Errorf("message carries the engine's error text: %q", msg)
	}
}
