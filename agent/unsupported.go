//go:build unix && !linux

package agent

// The agent runs in Linux containers only. These stubs keep the package
// compiling elsewhere (go vet ./... on a developer's Mac); every entry point
// fails clearly instead.

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

var errUnsupported = errors.New("agent: supported on linux only")

// InitChildEnv marks the re-executed child of RunInit.
const InitChildEnv = internalEnvPrefix + "INIT_CHILD"

// ShouldRunInit is always false off Linux.
func ShouldRunInit() bool { return false }

// RunInit is unsupported off Linux.
func RunInit(argv []string, log *slog.Logger) int {
	log.Error("init", "err", errUnsupported)
	return 1
}

// ListenUnix is unsupported off Linux.
func ListenUnix(path string) (*net.UnixListener, error) { return nil, errUnsupported }

type windowSize struct{ Cols, Rows, Width, Height uint32 }

type ptyDevice struct {
	master *os.File
	name   string
}

func listenUnixMode(path string, sotype int, mode uint32) (*net.UnixListener, error) {
	return nil, errUnsupported
}

func openPTY(windowSize, []byte) (*ptyDevice, error)                         { return nil, errUnsupported }
func (d *ptyDevice) resize(windowSize) error                                 { return errUnsupported }
func (d *ptyDevice) copyOut(io.Writer, <-chan struct{}, time.Duration) error { return errUnsupported }
func (d *ptyDevice) startDrain(time.Duration)                                {}
func (d *ptyDevice) closeMaster()                                            {}
func (d *ptyDevice) close()                                                  {}

func startProcess(*exec.Cmd, *ptyDevice) (*process, error) { return nil, errUnsupported }

func (p *process) signalGroup(sig syscall.Signal) error { return syscall.Kill(-p.pid, sig) }

// ListenUnixPacket is unsupported off Linux.
func ListenUnixPacket(path string) (*net.UnixListener, error) { return nil, errUnsupported }
