//go:build linux

package agent

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// startProcess starts cmd in a new session (Setsid), so the agent can signal
// the whole job with one kill(-pgid) and user processes never share the
// agent's session. With a pty, the terminal becomes its controlling tty.
func startProcess(cmd *exec.Cmd, pd *ptyDevice) (*process, error) {
	p := &process{cmd: cmd, exited: make(chan struct{}), pty: pd}
	if pd != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pd.tty, pd.tty, pd.tty
		// Ctty is a descriptor number in the child: 0 is the tty.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		pd.closeTTY()
		p.pid = cmd.Process.Pid
		return p, nil
	}

	var files []*os.File // everything to close on failure
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	fail := func(err error) (*process, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("stdin pipe: %w", err))
	}
	outR, outW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("stdout pipe: %w", err))
	}
	errR, errW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("stderr pipe: %w", err))
	}
	// *os.File stdio is handed to the child as is: exec starts no copying
	// goroutines and Wait does not touch our ends.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	// The child has its copies; ours would keep the pipes open forever.
	inR.Close()
	outW.Close()
	errW.Close()
	p.stdin, p.stdout, p.stderr = inW, outR, errR
	p.pid = cmd.Process.Pid
	return p, nil
}

// signalGroup signals the process group the session started. It may outlive
// its leader (background jobs), which is why it is addressed by pgid.
func (p *process) signalGroup(sig syscall.Signal) error {
	return syscall.Kill(-p.pid, sig)
}
