//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// ListenUnix creates the link socket at path with mode 0600: the socket's
// permissions are the only trust boundary of the link. A socket left by a
// previous run (container restart) is removed first; any other kind of file
// is an error rather than something to delete.
func ListenUnix(path string) (*net.UnixListener, error) {
	return listenFresh(path, unix.SOCK_STREAM)
}

// ListenUnixPacket is ListenUnix for the descriptor socket (SOCK_SEQPACKET,
// internal/fdpass).
func ListenUnixPacket(path string) (*net.UnixListener, error) {
	return listenFresh(path, unix.SOCK_SEQPACKET)
}

func listenFresh(path string, sotype int) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln, err := listenUnixMode(path, sotype, 0o600)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

// listenUnixMode binds a unix socket whose file is created with mode (further
// restricted by the umask). Linux creates the file with the mode of the
// socket's own inode, which fchmod sets before bind — so there is no window
// with a wider mode, and unlike umask it does not race with other goroutines
// creating files.
func listenUnixMode(path string, sotype int, mode uint32) (*net.UnixListener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, sotype|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // FileListener holds its own duplicate
	if err := unix.Fchmod(fd, mode); err != nil {
		return nil, os.NewSyscallError("fchmod", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		os.Remove(path)
		return nil, os.NewSyscallError("listen", err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(true)
	return ul, nil
}
