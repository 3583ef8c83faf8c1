package agent

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pkg/sftp"
)

// SFTPServerInternal, as Server.SFTPServer, always serves sftp with the
// agent's own server (pkg/sftp).
const SFTPServerInternal = "internal"

// openSSHSFTPServers are where images keep OpenSSH's sftp-server (Debian and
// Ubuntu, Fedora and RHEL, Alpine, Arch), tried in order.
var openSSHSFTPServers = []string{
	"/usr/lib/openssh/sftp-server",
	"/usr/libexec/openssh/sftp-server",
	"/usr/lib/ssh/sftp-server",
	"/usr/libexec/sftp-server",
}

// sftpServer is the image's OpenSSH sftp-server to run for the sftp
// subsystem, or "" for the agent's own.
func (srv *Server) sftpServer() string {
	switch srv.SFTPServer {
	case SFTPServerInternal:
		return ""
	case "":
		for _, p := range openSSHSFTPServers {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		return ""
	}
	return srv.SFTPServer
}

// startSFTP serves the sftp subsystem. An image with OpenSSH's sftp-server
// gets it, as sshd would run it (the same code as sshd's internal-sftp, so
// every client extension and the same speed); any other image gets the
// agent's own, pkg/sftp, so scp (which is sftp since OpenSSH 9) and sftp
// work in any image: as a child process whose pipes the gateway copies when
// it takes the descriptors, in-process over the link otherwise. Relative
// paths resolve against $HOME: scp turns "host:~/x" and "host:x" into the
// relative path "x" (scp.c prepare_remote_path).
func (s *session) startSFTP() (bool, func()) {
	if s.kind != "" {
		return false, nil
	}
	server := s.c.srv.sftpServer()
	if server != "" || (s.fdID != 0 && s.c.srv.Self != "") {
		// A child process, whose pipes the gateway copies like an exec's
		// (fdpass.go), or the agent over the link.
		cmd := &exec.Cmd{Path: server, Args: []string{filepath.Base(server)}}
		if server == "" {
			cmd = &exec.Cmd{Path: s.c.srv.Self, Args: []string{filepath.Base(s.c.srv.Self), "sftp-server"}}
		}
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
