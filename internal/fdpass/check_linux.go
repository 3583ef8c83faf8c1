package fdpass

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Check verifies that files are what a message of kind k promises, so the
// gateway never reads, writes or ioctls a descriptor of another kind (an
// epoll or userfaultfd descriptor, a FUSE file that blocks forever, a
// listening socket).
func Check(k Kind, files []*os.File) error {
	if len(files) != k.fds() {
		return fmt.Errorf("%w: %s with %d descriptors", ErrBadFD, k, len(files))
	}
	switch k {
	case Pipes:
		for i, wantMode := range []int{unix.O_WRONLY, unix.O_RDONLY, unix.O_RDONLY} {
			if err := checkPipe(files[i], wantMode); err != nil {
				return fmt.Errorf("%w: %s descriptor %d: %v", ErrBadFD, k, i, err)
			}
		}
	case PTY:
		if err := checkPTYMaster(files[0]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadFD, k, err)
		}
	case Conn:
		if err := checkStreamSocket(files[0]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadFD, k, err)
		}
	}
	return nil
}

func fstat(f *os.File) (unix.Stat_t, int, error) {
	var st unix.Stat_t
	var flags int
	rc, err := f.SyscallConn()
	if err != nil {
		return st, 0, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.Fstat(int(fd), &st); serr != nil {
			return
		}
		flags, serr = unix.FcntlInt(fd, unix.F_GETFL, 0)
	})
	if err == nil {
		err = serr
	}
	return st, flags, err
}

func checkPipe(f *os.File, accmode int) error {
	st, flags, err := fstat(f)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("not a pipe (mode %o)", st.Mode)
	}
	if flags&unix.O_ACCMODE != accmode {
		return fmt.Errorf("pipe open with access mode %d, want %d", flags&unix.O_ACCMODE, accmode)
	}
	return nil
}

func checkPTYMaster(f *os.File) error {
	st, flags, err := fstat(f)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return fmt.Errorf("not a character device (mode %o)", st.Mode)
	}
	if flags&unix.O_ACCMODE != unix.O_RDWR {
		return fmt.Errorf("not open for reading and writing")
	}
	// Only a master answers TIOCGPTN (its slave's number); a slave, a tty
	// or any other device says ENOTTY.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { _, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN) }); err != nil {
		return err
	}
	if ierr != nil {
		return fmt.Errorf("not a pty master: %v", ierr)
	}
	return nil
}

func checkStreamSocket(f *os.File) error {
	st, _, err := fstat(f)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("not a socket (mode %o)", st.Mode)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var typ, domain, listening int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			return
		}
		if domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			return
		}
		listening, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	}); err != nil {
		return err
	}
	switch {
	case serr != nil:
		return serr
	case typ != unix.SOCK_STREAM:
		return fmt.Errorf("socket type %d, want a stream", typ)
	case domain != unix.AF_INET && domain != unix.AF_INET6 && domain != unix.AF_UNIX:
		return fmt.Errorf("socket domain %d", domain)
	case listening != 0:
		return errors.New("a listening socket")
	}
	return nil
}
