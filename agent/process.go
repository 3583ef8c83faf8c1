package agent

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// process is the one process a shell/exec session runs, with the agent's
// ends of its stdio.
type process struct {
	cmd    *exec.Cmd
	pid    int // also its process group and session id (Setsid)
	exited chan struct{}
	status exitStatus // valid once exited is closed

	// Without a pty: the agent's pipe ends. Our own os.Pipe pairs rather
	// than cmd.StdoutPipe, because Wait closes StdoutPipe readers as soon as
	// the process exits — before we have read everything (the classic
	// truncated-output race).
	stdin          *os.File
	stdout, stderr *os.File
	// With a pty: stdin, stdout and stderr are all the terminal.
	pty *ptyDevice
	// offloaded: the parent ends were handed to the gateway (fdpass.go);
	// the agent holds none of them.
	offloaded bool
}

// exitStatus is how a session's process ended.
type exitStatus struct {
	code   int            // exit code, or 128+signal
	signal syscall.Signal // non-zero when killed by a signal
	core   bool
}

// wait reaps the process and publishes its status.
func (p *process) wait() {
	err := p.cmd.Wait()
	ps := p.cmd.ProcessState
	switch {
	case ps == nil:
		p.status = exitStatus{code: 255}
	default:
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.status = exitStatus{code: 128 + int(ws.Signal()), signal: ws.Signal(), core: ws.CoreDump()}
		} else {
			p.status = exitStatus{code: ps.ExitCode()}
		}
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		p.status.code = 255
	}
	close(p.exited)
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signalLeader signals only the session's own process. os.Process uses a
// pidfd, so this cannot hit a recycled pid after the process was reaped.
func (p *process) signalLeader(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// closeOutputs stops output copying: pipe writers that remain get EPIPE /
// SIGPIPE as under sshd when the client is gone; with a pty it is a hangup.
func (p *process) closeOutputs() {
	if p.pty != nil {
		p.pty.closeMaster()
		return
	}
	p.stdout.Close()
	p.stderr.Close()
}

// closeInput closes the process's stdin (pipes only: a terminal has no
// half-close, the terminal is closed with the master).
func (p *process) closeInput() {
	if p.pty != nil {
		p.pty.closeMaster()
		return
	}
	p.stdin.Close()
}
