package admin

import (
	"fmt"
	"net"
	"syscall"
)

// peerOf reads the connecting process's credentials with SO_PEERCRED.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{uid: -1, err: fmt.Errorf("not a unix socket connection (%T)", c)}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{uid: -1, err: err}
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return peer{uid: -1, err: err}
	}
	if credErr != nil {
		return peer{uid: -1, err: fmt.Errorf("SO_PEERCRED: %w", credErr)}
	}
	return peer{uid: int(cred.Uid), known: true}
}
