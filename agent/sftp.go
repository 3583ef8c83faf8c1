package agent

import (
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
