//go:build linux

package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ptyDevice is a session's pseudo-terminal. Line discipline (ONLCR, echo,
// raw mode) is the kernel's, so full-screen programs get exactly the bytes a
// real sshd gives them. The agent itself writes only the ports banner of an
// interactive login (ports.go), into the slave before the shell starts, so
// it goes through the same line discipline.
type ptyDevice struct {
	// master is non-blocking and registered with the runtime poller, so
	// reads honour deadlines — needed for the bounded drain after exit.
	master *os.File
	// tty is the slave side. The agent closes its copy as soon as the
	// process holds it: the master reports EIO (our EOF) only when no slave
	// descriptor is left open.
	tty  *os.File
	name string

	masterOnce sync.Once
	ttyOnce    sync.Once
}

// windowSize is the size from pty-req / window-change (RFC 4254 §6.2, §6.7).
type windowSize struct {
	Cols, Rows, Width, Height uint32
}

// openPTY allocates a pty of the given size with the client's terminal modes.
func openPTY(win windowSize, modes []byte) (*ptyDevice, error) {
	m, t, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	// creack/pty's ioctls go through File.Fd, which puts the descriptor in
	// blocking mode and turns deadlines off for good. Re-wrap a
	// non-blocking duplicate so os.NewFile registers it with the poller.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		t.Close()
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	d := &ptyDevice{master: os.NewFile(uintptr(fd), "/dev/ptmx"), tty: t, name: t.Name()}
	if err := d.applyModes(modes); err != nil {
		d.close()
		return nil, err
	}
	if err := d.resize(win); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// resize sets the window size; the kernel sends SIGWINCH to the foreground
// process group. It is a single ioctl, safe to call from the request loop.
func (d *ptyDevice) resize(win windowSize) error {
	clamp := func(v uint32) uint16 { return uint16(min(v, 0xffff)) }
	ws := &unix.Winsize{Row: clamp(win.Rows), Col: clamp(win.Cols), Xpixel: clamp(win.Width), Ypixel: clamp(win.Height)}
	rc, err := d.master.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	if ioErr != nil {
		return fmt.Errorf("resize pty: %w", ioErr)
	}
	return nil
}

// closeTTY drops the agent's copy of the slave.
func (d *ptyDevice) closeTTY() {
	d.ttyOnce.Do(func() { d.tty.Close() })
}

// closeMaster hangs the terminal up: the kernel sends SIGHUP to the
// session leader and the foreground process group.
func (d *ptyDevice) closeMaster() {
	d.masterOnce.Do(func() { d.master.Close() })
}

func (d *ptyDevice) close() {
	d.closeTTY()
	d.closeMaster()
}

// copyOut forwards terminal output to w until the slave side is gone (EIO)
// or, once exited is closed, until nothing arrived for idle. The idle bound
// is what lets `ssh -t host 'setsid sleep 100 &'` return like with sshd even
// though the background job keeps the slave open.
func (d *ptyDevice) copyOut(w io.Writer, exited <-chan struct{}, idle time.Duration) error {
	buf := make([]byte, 32<<10)
	afterExit := false
	for {
		if !afterExit {
			select {
			case <-exited:
				afterExit = true
			default:
			}
		}
		if afterExit {
			d.master.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := d.master.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Only set after exit (startDrain or the loop above).
			select {
			case <-exited:
				return nil
			default:
			}
		case errors.Is(err, syscall.EIO), errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
	}
}

// startDrain bounds a read of copyOut that is blocked when the process exits.
func (d *ptyDevice) startDrain(idle time.Duration) {
	d.master.SetReadDeadline(time.Now().Add(idle))
}

// Terminal mode opcodes of RFC 4254 §8 mapped to termios. sshd applies the
// client's modes (tty_parse_modes), so e.g. the client's erase character
// works; so do we.
var (
	ttyChars = map[byte]int{
		1: unix.VINTR, 2: unix.VQUIT, 3: unix.VERASE, 4: unix.VKILL, 5: unix.VEOF,
		6: unix.VEOL, 7: unix.VEOL2, 8: unix.VSTART, 9: unix.VSTOP, 10: unix.VSUSP,
		12: unix.VREPRINT, 13: unix.VWERASE, 14: unix.VLNEXT, 18: unix.VDISCARD,
	}
	ttyIflags = map[byte]uint32{
		30: unix.IGNPAR, 31: unix.PARMRK, 32: unix.INPCK, 33: unix.ISTRIP, 34: unix.INLCR,
		35: unix.IGNCR, 36: unix.ICRNL, 37: unix.IUCLC, 38: unix.IXON, 39: unix.IXANY,
		40: unix.IXOFF, 41: unix.IMAXBEL, 42: unix.IUTF8,
	}
	ttyLflags = map[byte]uint32{
		50: unix.ISIG, 51: unix.ICANON, 52: unix.XCASE, 53: unix.ECHO, 54: unix.ECHOE,
		55: unix.ECHOK, 56: unix.ECHONL, 57: unix.NOFLSH, 58: unix.TOSTOP, 59: unix.IEXTEN,
		60: unix.ECHOCTL, 61: unix.ECHOKE, 62: unix.PENDIN,
	}
	ttyOflags = map[byte]uint32{
		70: unix.OPOST, 71: unix.OLCUC, 72: unix.ONLCR, 73: unix.OCRNL, 74: unix.ONOCR, 75: unix.ONLRET,
	}
	ttyCflags = map[byte]uint32{
		90: unix.CS7, 91: unix.CS8, 92: unix.PARENB, 93: unix.PARODD,
	}
)

// parseModes applies encoded terminal modes to t. Parsing stops at
// TTY_OP_END, at an opcode of 160 or more (their argument format is
// unknown, RFC 4254 §8) or at a truncated entry, like sshd.
func parseModes(t *unix.Termios, modes []byte) {
	setFlag := func(f *uint32, bit uint32, on bool) {
		if on {
			*f |= bit
		} else {
			*f &^= bit
		}
	}
	for len(modes) >= 5 {
		op := modes[0]
		if op == 0 || op >= 160 {
			return
		}
		arg := binary.BigEndian.Uint32(modes[1:5])
		modes = modes[5:]
		if i, ok := ttyChars[op]; ok {
			// 255 is how sshd encodes _POSIX_VDISABLE.
			if arg == 255 {
				arg = 0
			}
			t.Cc[i] = uint8(arg)
			continue
		}
		if bit, ok := ttyIflags[op]; ok {
			setFlag(&t.Iflag, bit, arg != 0)
		} else if bit, ok := ttyLflags[op]; ok {
			setFlag(&t.Lflag, bit, arg != 0)
		} else if bit, ok := ttyOflags[op]; ok {
			setFlag(&t.Oflag, bit, arg != 0)
		} else if bit, ok := ttyCflags[op]; ok {
			setFlag(&t.Cflag, bit, arg != 0)
		}
		// 128/129 (speeds) and unknown opcodes below 160 are ignored.
	}
}

func (d *ptyDevice) applyModes(modes []byte) error {
	if len(modes) == 0 {
		return nil
	}
	fd := int(d.tty.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get terminal modes: %w", err)
	}
	parseModes(t, modes)
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set terminal modes: %w", err)
	}
	return nil
}
