// Package gpu is the gateway's view of the host's NVIDIA GPUs through NVML
// (github.com/NVIDIA/go-nvml): an inventory read on demand (index, UUID,
// name, memory, utilisation, temperature, MIG mode, and the processes on
// each GPU mapped to their containers) and a health watcher fed by XID
// events.
//
// NVML sits behind Library, the few calls this package makes, so tests run
// on go-nvml's mock machines (pkg/nvml/mock/dgxa100 and friends). Open calls
// Init once; Close calls Shutdown once, and only after a successful Init.
// A host without the driver or its library is not an error for the gateway:
// Open returns an Inventory whose Snapshot says ErrNoGPUs ("no NVIDIA GPUs on
// this host") and which never calls NVML again.
//
// A function an older driver lacks (ERROR_FUNCTION_NOT_FOUND,
// ERROR_NOT_SUPPORTED) leaves that one field unknown (nil in Go, absent in
// JSON, listed in Device.Unknown); everything else is still read.
//
// The package needs cgo: go-nvml loads libnvidia-ml.so.1 with dlopen at
// Init, so the binary itself does not link against the driver.
package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrNoGPUs is what a host without the NVIDIA driver or its library reports.
// Its text is what admins see.
var ErrNoGPUs = errors.New("no NVIDIA GPUs on this host")

// Library is the part of NVML this package uses. nvml.Interface (the real
// library, see Options.LibraryPath) and go-nvml's mock machines satisfy it.
type Library interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	SystemGetDriverVersion() (string, nvml.Return)
	SystemGetCudaDriverVersion() (int, nvml.Return)
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
	EventSetCreate() (nvml.EventSet, nvml.Return)
}

var _ Library = nvml.Interface(nil)

// Options configure Open. The zero value uses the system's NVML.
type Options struct {
	// Library is the NVML to use; nil: the system's libnvidia-ml, loaded
	// from LibraryPath.
	Library Library
	// LibraryPath is the NVML shared library to load when Library is nil;
	// empty: "libnvidia-ml.so.1" through the dynamic loader's search path.
	LibraryPath string
	// ProcRoot is where /proc is mounted, for a process's cgroup; empty:
	// "/proc".
	ProcRoot string
	// WaitTimeout bounds one wait for an XID event in Watch, and so how long
	// Watch takes to notice a cancelled context; zero: 5s.
	WaitTimeout time.Duration
	// Logger gets the Init outcome and every health change; nil:
	// slog.Default().
	Logger *slog.Logger
}

// Health is a GPU's state as the XID watcher last saw it.
type Health string

const (
	Healthy   Health = "healthy"
	Unhealthy Health = "unhealthy"
)

// Device is one GPU in a Snapshot. Pointer fields are nil when the driver
// could not say (Unknown names them and why).
type Device struct {
	Index       int     `json:"index"`
	UUID        string  `json:"uuid"`
	Name        string  `json:"name"`
	MemoryTotal *uint64 `json:"memory_total_bytes,omitempty"`
	MemoryUsed  *uint64 `json:"memory_used_bytes,omitempty"`
	// Utilization is the percentage of the last sample period in which a
	// kernel ran on the GPU.
	Utilization *uint32 `json:"utilization_percent,omitempty"`
	Temperature *uint32 `json:"temperature_celsius,omitempty"`
	// MIGMode is "enabled" or "disabled" (the current mode); empty when
	// the GPU has no MIG or the driver cannot say.
	MIGMode      string    `json:"mig_mode,omitempty"`
	Health       Health    `json:"health"`
	HealthReason string    `json:"health_reason,omitempty"` // why it is unhealthy
	Processes    []Process `json:"processes"`
	// Unknown lists the fields the driver did not give, each with NVML's
	// reason ("temperature: ERROR_NOT_SUPPORTED").
	Unknown []string `json:"unknown,omitempty"`
}

// Process is one process using a GPU.
type Process struct {
	PID        uint32  `json:"pid"`
	UsedMemory *uint64 `json:"used_memory_bytes,omitempty"`
	// ContainerID is the 64-hex ID of the container the process runs in,
	// from its cgroup; empty when it is not in one (or already gone).
	ContainerID string `json:"container_id,omitempty"`
}

// Snapshot is the inventory at one moment.
type Snapshot struct {
	// Err is why there are no GPUs to show: ErrNoGPUs, or NVML failing
	// (wrapped); nil when NVML answered.
	Err     error
	Driver  string // the driver version; empty when unknown
	Devices []Device
}

// Inventory reads the host's GPUs through NVML. Its methods are safe for
// concurrent use.
type Inventory struct {
	lib      Library
	initErr  error // Init's failure: no NVML call is made after it
	procRoot string
	wait     time.Duration
	log      *slog.Logger

	// stop ends the watchers at Close; watchers counts them so that Shutdown
	// comes after the last event-set call.
	stop     context.CancelFunc
	stopCtx  context.Context
	watchers sync.WaitGroup

	// mu is held for reading across every NVML call and for writing while
	// Close marks the inventory closed, so Shutdown never races a reader.
	mu     sync.RWMutex
	closed bool

	healthMu sync.Mutex
	health   map[string]string // UUID -> why it is unhealthy
}

// Open initialises NVML once and returns the inventory. It does not fail:
// when NVML cannot be initialised, the inventory reports why through
// Err and Snapshot and makes no further NVML call.
func Open(opts Options) *Inventory {
	inv := &Inventory{
		lib:      opts.Library,
		procRoot: opts.ProcRoot,
		wait:     opts.WaitTimeout,
		log:      opts.Logger,
		health:   map[string]string{},
	}
	if inv.procRoot == "" {
		inv.procRoot = "/proc"
	}
	if inv.wait <= 0 {
		inv.wait = 5 * time.Second
	}
	if inv.log == nil {
		inv.log = slog.Default()
	}
	inv.stopCtx, inv.stop = context.WithCancel(context.Background())
	if inv.lib == nil {
		inv.lib = systemLibrary(opts.LibraryPath)
	}
	switch ret := inv.lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED:
		// No library, or a library without its kernel module: nothing
		// here is a GPU we could hand out.
		inv.initErr = fmt.Errorf("%w (NVML: %s)", ErrNoGPUs, errorName(ret))
	default:
		inv.initErr = fmt.Errorf("NVML cannot be initialised: %s", errorName(ret))
	}
	return inv
}

// Err is why the inventory has no GPUs (see Snapshot.Err); nil when NVML
// was initialised.
func (inv *Inventory) Err() error { return inv.initErr }

// Close stops any Watch, waits for it, and shuts NVML down (once, and only
// if Init succeeded). Later calls do nothing.
func (inv *Inventory) Close() error {
	inv.mu.Lock()
	if inv.closed {
		inv.mu.Unlock()
		return nil
	}
	inv.closed = true
	inv.mu.Unlock()
	inv.stop()
	inv.watchers.Wait()
	if inv.initErr != nil {
		return nil
	}
	if ret := inv.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("NVML shutdown: %s", errorName(ret))
	}
	return nil
}

// CUDADriverVersion is the newest CUDA version the driver supports, as NVML
// encodes it: 1000*major + 10*minor (12090 is CUDA 12.9).
func (inv *Inventory) CUDADriverVersion() (int, error) {
	if err := inv.acquire(); err != nil {
		return 0, err
	}
	defer inv.mu.RUnlock()
	v, ret := inv.lib.SystemGetCudaDriverVersion()
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("NVML cannot say the CUDA driver version: %s", errorName(ret))
	}
	return v, nil
}

// ErrClosed is what an inventory answers after Close.
var ErrClosed = errors.New("the GPU inventory is closed")

// acquire takes the read lock when NVML may be called now; the caller
// releases it with inv.mu.RUnlock.
func (inv *Inventory) acquire() error {
	if inv.initErr != nil {
		return inv.initErr
	}
	inv.mu.RLock()
	if inv.closed {
		inv.mu.RUnlock()
		return ErrClosed
	}
	return nil
}
