package agent

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pkg/sftp"
)

// startSFTP serves the sftp subsystem in-process with pkg/sftp, so scp (which
// is sftp since OpenSSH 9) and sftp work in any image, even one without
// openssh-sftp-server. Relative paths resolve against $HOME: scp turns
// "host:~/x" and "host:x" into the relative path "x" (scp.c
// prepare_remote_path).
func (s *session) startSFTP() (bool, func()) {
	if s.kind != "" {
		return false, nil
	}
	if s.fdID != 0 && s.c.srv.Self != "" {
		// The gateway takes the descriptors: sftp is a child process whose
		// pipes it copies, like an exec (fdpass.go).
		cmd := &exec.Cmd{Path: s.c.srv.Self, Args: []string{filepath.Base(s.c.srv.Self), "sftp-server"}}
		cmd.Dir = s.workDir()
		cmd.Env = s.environ()
		p, err := startProcess(cmd, nil)
		if err != nil {
			s.log.Warn("sftp start failed", "err", err)
			return false, nil
		}
		s.kind, s.command, s.proc = "subsystem", "sftp", p
		s.runDone = make(chan struct{})
		if s.offload(p) {
			return true, func() { s.awaitProcess(p) }
		}
		return true, func() { s.runProcess(p) }
	}
	s.declineFDs()
	srv, err := sftp.NewServer(s.ch, sftp.WithServerWorkingDirectory(s.workDir()))
	if err != nil {
		s.log.Warn("sftp start failed", "err", err)
		return false, nil
	}
	s.kind, s.command = "subsystem", "sftp"
	s.runDone = make(chan struct{})
	return true, func() {
		defer close(s.runDone)
		// Serve returns nil when the client closed its side between packets.
		// Its Close would close the channel before exit-status (pkg/sftp#321:
		// scp then exits 1), so the channel is ended by sendExit instead.
		st := exitStatus{}
		if err := srv.Serve(); err != nil {
			s.log.Info("sftp session failed", "err", err)
			st.code = 1
		}
		s.exit = st
		s.sendExit(st)
	}
}

// ServeSFTP serves one sftp session on r and w, relative paths resolving
// against the working directory: the `sygaldry-agent sftp-server` child.
// It returns nil when the client ends the session.
func ServeSFTP(r io.Reader, w io.WriteCloser) error {
	dir, err := os.Getwd()
	if err != nil {
		dir = "/"
	}
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{r, w}, sftp.WithServerWorkingDirectory(dir))
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil && err != io.EOF {
		return err
	}
	return nil
}
