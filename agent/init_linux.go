//go:build linux

package agent

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitChildEnv marks the re-executed child of RunInit, so it serves instead
// of acting as init again. It is removed from the environment of user
// processes (the SYGALDRY_AGENT_ prefix).
const InitChildEnv = internalEnvPrefix + "INIT_CHILD"

// ShouldRunInit reports whether the agent is the container's PID 1 and not
// yet the re-executed child: then it must act as init (RunInit).
func ShouldRunInit() bool {
	return os.Getpid() == 1 && os.Getenv(InitChildEnv) == ""
}

// forwardedSignals are passed from init to the agent: docker stop sends
// SIGTERM to PID 1, and Ctrl-C of `docker run -it` sends SIGINT.
var forwardedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}

// RunInit is PID 1 of the container: it re-executes the agent binary
// (/proc/self/exe, argv as given, InitChildEnv set) as its only child,
// forwards SIGTERM and SIGINT to it, reaps every process that exits in the
// container — orphans are re-parented to PID 1, and a PID 1 that never
// waits fills the process table with zombies — and returns the child's exit
// status (128+N for a signal) once the child is gone.
//
// Reaping and serving are split across two processes because reaping with
// wait4(-1) steals the statuses that exec.Cmd.Wait needs for exit-status.
func RunInit(argv []string, log *slog.Logger) int {
	sigs := make(chan os.Signal, 64)
	// Registered before the child exists, so neither a SIGCHLD nor an early
	// SIGTERM can be missed.
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwardedSignals...)...)
	defer signal.Stop(sigs)

	cmd := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   argv,
		Env:    append(os.Environ(), InitChildEnv+"=1"),
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
	}
	if err := cmd.Start(); err != nil {
		log.Error("init: start agent", "err", err)
		return 1
	}
	child := cmd.Process.Pid
	log.Debug("init: agent started", "pid", child)
	for {
		if code, done := reapAll(child); done {
			return code
		}
		sig := <-sigs
		if sig == syscall.SIGCHLD {
			continue
		}
		if err := syscall.Kill(child, sig.(syscall.Signal)); err != nil {
			log.Warn("init: forward signal", "signal", sig, "err", err)
		}
	}
}

// reapAll collects every exited child without blocking and reports the
// agent's exit status once it is among them.
func reapAll(child int) (code int, done bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD (nothing left) or nothing has exited yet.
			return 0, false
		}
		if pid != child {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), true
		}
		return ws.ExitStatus(), true
	}
}
