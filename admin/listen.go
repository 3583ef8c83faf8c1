package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrSocketInUse is returned by Listen when another process (usually another
// gateway) already answers on the socket path.
var ErrSocketInUse = errors.New("admin socket in use")

// maxSocketPath is the longest path a unix socket can be bound to on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Listen creates the admin API's unix socket at path, mode 0600, and returns
// its listener. Closing the listener removes the socket file.
//
// The parent directory is created (0755) when missing. A socket file left
// behind by a gateway that died is replaced; one that still answers is not:
// Listen fails with ErrSocketInUse rather than steal a live gateway's socket.
// Anything at path that is not a socket is never removed.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("admin socket: empty path")
	}
	path = filepath.Clean(path)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("admin socket: create directory: %w", err)
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}

	// The socket must never be reachable with default permissions, not even
	// for an instant. umask(077) around bind would do it, but umask is
	// process-wide: any file another goroutine creates meanwhile would get the
	// wrong mode. Instead bind inside a fresh 0700 directory nobody else can
	// enter, chmod the socket to 0600 there, and rename it into place. rename(2)
	// is atomic and keeps the inode, so clients connecting to path reach this
	// socket, and it also replaces a stale socket file in one step.
	tmpDir, err := os.MkdirTemp(dir, ".adm")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath || len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket %s: path too long for a unix socket (max %d bytes)", path, maxSocketPath)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// The bound name is tmp, which stops existing after the rename; removing
	// the socket on Close is our job (see listener.Close).
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &listener{UnixListener: ul, path: path, fi: fi}, nil
}

// checkStale makes sure nothing live is at path, removing a dead socket file.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket %s: a file that is not a socket is in the way; remove it or set server.admin_socket", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: another process (another sygaldry-gateway?) is serving on it: %w", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin socket %s: cannot tell whether it is in use: %w", path, err)
	}
	// Nobody answers: left behind by a gateway that did not exit cleanly. The
	// rename in Listen replaces it; nothing to remove here.
	return nil
}

// listener removes its socket file on Close, but only while the file is still
// the socket it created (a successor may have replaced it).
type listener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo
	once sync.Once
}

// Addr reports the socket's final path, not the name it was bound to.
func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}
