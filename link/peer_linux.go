package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NS identifies a namespace: the device and inode of its /proc/PID/ns file.
type NS struct{ Dev, Ino uint64 }

func (n NS) zero() bool { return n == NS{} }

func (n NS) String() string { return fmt.Sprintf("pid:[%d]", n.Ino) }

// PidNSOf returns the pid namespace of process pid (as the caller sees it).
func PidNSOf(pid int) (NS, error) {
	if pid <= 0 {
		return NS{}, fmt.Errorf("pid namespace of pid %d: no such process", pid)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/pid", &st); err != nil {
		return NS{}, fmt.Errorf("pid namespace of pid %d: %w", pid, err)
	}
	return NS{Dev: st.Dev, Ino: st.Ino}, nil
}

// dialVerified connects (network "unix" or "unixpacket") to the socket at
// path without following a symlink
// and checks that the process listening on it is in want's pid namespace.
func dialVerified(ctx context.Context, network, path string, want Peer) (net.Conn, error) {
	f, err := openSocket(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Connecting through the O_PATH descriptor reaches exactly the inode
	// that was checked: a rename or a new symlink after openSocket cannot
	// redirect it.
	var d net.Dialer
	c, err := d.DialContext(ctx, network, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, path, err)
	}
	pid, err := peerPid(c)
	if err == nil {
		err = checkPeerNS(pid, want)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// openSocket opens path itself (never a symlink's target) and checks that
// it is a socket with a single name.
func openSocket(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		err = fmt.Errorf("%w: %s is a symbolic link", ErrUntrusted, path)
	case st.Mode&unix.S_IFMT != unix.S_IFSOCK:
		err = fmt.Errorf("%w: %s is not a socket (mode %o)", ErrUntrusted, path, st.Mode)
	case st.Nlink != 1:
		err = fmt.Errorf("%w: %s has %d hard links", ErrUntrusted, path, st.Nlink)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// peerPid is the pid of the process that listens on the other end of c, as
// the kernel recorded it (SO_PEERCRED), in the caller's pid namespace.
func peerPid(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("%w: not a unix socket connection (%T)", ErrUntrusted, c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("%w: SO_PEERCRED: %v", ErrUntrusted, credErr)
	}
	if cred.Pid <= 0 {
		// The listener is in a pid namespace the caller cannot see.
		return 0, fmt.Errorf("%w: the process behind the socket is not visible from the gateway", ErrUntrusted)
	}
	return int(cred.Pid), nil
}

func checkPeerNS(pid int, want Peer) error {
	got, err := PidNSOf(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: the process behind the socket (pid %d) is gone", ErrUntrusted, pid)
		}
		return fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if got != want.PidNS {
		return fmt.Errorf("%w: the socket is served by pid %d in %s, not by container %s (%s)", ErrUntrusted, pid, got, want.Container, want.PidNS)
	}
	if want.ContainerID == "" {
		return nil
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return fmt.Errorf("%w: the cgroup of pid %d: %v", ErrUntrusted, pid, err)
	}
	if !inContainerCgroup(string(data), want.ContainerID) {
		return fmt.Errorf("%w: the socket is served by pid %d, which is not in the cgroup of container %s (%.12s)", ErrUntrusted, pid, want.Container, want.ContainerID)
	}
	return nil
}

// inContainerCgroup tells whether a /proc/PID/cgroup text places the process
// in (or below) the cgroup of container id: a path element that is the ID
// (cgroupfs driver: /docker/ID) or holds it (systemd: docker-ID.scope). A
// process cannot move itself into another container's cgroup.
func inContainerCgroup(text, id string) bool {
	if len(id) < 32 {
		return false
	}
	for line := range strings.SplitSeq(text, "\n") {
		_, path, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		_, path, ok = strings.Cut(path, ":")
		if !ok {
			continue
		}
		for elem := range strings.SplitSeq(path, "/") {
			if elem == id || elem == "docker-"+id+".scope" || strings.HasSuffix(elem, "-"+id+".scope") {
				return true
			}
		}
	}
	return false
}
