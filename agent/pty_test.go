//go:build linux

package agent

import (
	"bytes"
	"encoding/binary"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

func ptySession(t *testing.T, c *ssh.Client, rows, cols int, modes ssh.TerminalModes) (*ssh.Session, *bytes.Buffer) {
	t.Helper()
	s := newSession(t, c)
	must(t, s.RequestPty("xterm-256color", rows, cols, modes), "pty-req")
	var out bytes.Buffer
	s.Stdout = &out
	return s, &out
}

func TestPTYIsATerminalWithTermAndSize(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s, out := ptySession(t, c, 40, 132, nil)
	must(t, s.Start(`tty; echo "$TERM $SSH_TTY"; stty size`), "start")
	must(t, waitSession(t, s, 10*time.Second), "wait")
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(out.String(), "\r\n", "\n")), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "/dev/pts/") ||
		lines[1] != "xterm-256color "+lines[0] || lines[2] != "40 132" {
		t.Fatalf("got %q", out.String())
	}
}

func TestPTYWindowChange(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s := newSession(t, c)
	must(t, s.RequestPty("xterm", 24, 80, nil), "pty-req")
	out, err := s.StdoutPipe()
	must(t, err, "stdout")
	// Report the size, then keep reporting until it changed.
	must(t, s.Start(`stty size; while [ "$(stty size)" = "24 80" ]; do sleep 0.05; done; stty size`), "start")
	if got := readLines(t, out, 1)[0]; got != "24 80" {
		t.Fatalf("initial size %q", got)
	}
	must(t, s.WindowChange(50, 100), "window-change")
	if got := readLines(t, out, 1)[0]; got != "50 100" {
		t.Fatalf("size after window-change %q", got)
	}
	must(t, waitSession(t, s, 10*time.Second), "wait")
}

// TestPTYWindowChangeBurstBeforeExec: queued resizes must not block the
// request loop, so exec still gets through and sees the last size.
func TestPTYWindowChangeBurstBeforeExec(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s, out := ptySession(t, c, 24, 80, nil)
	for i := range 50 {
		must(t, s.WindowChange(30+i, 90+i), "window-change %d", i)
	}
	must(t, s.Start("stty size"), "start")
	must(t, waitSession(t, s, 10*time.Second), "wait")
	if got := strings.TrimSpace(out.String()); got != "79 139" {
		t.Fatalf("size %q, want the last one, 79 139", got)
	}
}

// TestPTYNoNewlineRewriting: the agent adds nothing; ONLCR is the tty's.
func TestPTYNoNewlineRewriting(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s, out := ptySession(t, c, 24, 80, nil)
	must(t, s.Start(`printf 'a\nb\n'; stty raw -echo; printf 'x\ny'; stty sane`), "start")
	must(t, waitSession(t, s, 10*time.Second), "wait")
	if got := out.String(); got != "a\r\nb\r\nx\ny" {
		t.Fatalf("got %q, want %q", got, "a\r\nb\r\nx\ny")
	}
}

func TestPTYTerminalModesApplied(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s, out := ptySession(t, c, 24, 80, ssh.TerminalModes{ssh.ECHO: 0, ssh.VERASE: 8})
	must(t, s.Start("stty -a"), "start")
	must(t, waitSession(t, s, 10*time.Second), "wait")
	got := out.String()
	if !regexp.MustCompile(`(^|\s)-echo(\s|$)`).MatchString(got) || !strings.Contains(got, "erase = ^H") {
		t.Fatalf("modes not applied:\n%s", got)
	}
}

func TestPTYExitCodeAndStdinEOF(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s, _ := ptySession(t, c, 24, 80, nil)
	s.Stdin = strings.NewReader("") // immediate EOF must not end or hang the pty session
	must(t, s.Start("sleep 0.2; exit 5"), "start")
	if got := exitCode(waitSession(t, s, 10*time.Second)); got != 5 {
		t.Fatalf("exit %d, want 5", got)
	}
}

// TestPTYBackgroundJobDoesNotHang: `ssh -t host 'setsid sleep 60 &'` returns
// with sshd even though the job keeps the terminal open.
func TestPTYBackgroundJobDoesNotHang(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s, out := ptySession(t, c, 24, 80, nil)
	start := time.Now()
	must(t, s.Start("setsid sleep 60 & echo $!"), "start")
	err := waitSession(t, s, 10*time.Second)
	if pid := strings.TrimSpace(out.String()); pid != "" {
		killLater(t, atoi(t, pid))
	}
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("pty session took %v to end", d)
	}
}

func TestParseModes(t *testing.T) {
	enc := func(pairs ...uint32) []byte {
		var b []byte
		for i := 0; i < len(pairs); i += 2 {
			b = append(b, byte(pairs[i]))
			b = binary.BigEndian.AppendUint32(b, pairs[i+1])
		}
		return append(b, 0)
	}
	base := unix.Termios{Lflag: unix.ECHO | unix.ICANON, Oflag: unix.OPOST}
	for _, tc := range []struct {
		name  string
		modes []byte
		check func(*unix.Termios) bool
	}{
		{"echo off", enc(53, 0), func(t *unix.Termios) bool { return t.Lflag&unix.ECHO == 0 && t.Lflag&unix.ICANON != 0 }},
		{"onlcr on", enc(72, 1), func(t *unix.Termios) bool { return t.Oflag&unix.ONLCR != 0 }},
		{"verase", enc(3, 0x7f), func(t *unix.Termios) bool { return t.Cc[unix.VERASE] == 0x7f }},
		{"vdisable", enc(1, 255), func(t *unix.Termios) bool { return t.Cc[unix.VINTR] == 0 }},
		{"stops at 160+", append([]byte{160, 0, 0, 0, 0}, enc(53, 0)...), func(t *unix.Termios) bool { return t.Lflag&unix.ECHO != 0 }},
		{"truncated", []byte{53, 0, 0}, func(t *unix.Termios) bool { return t.Lflag&unix.ECHO != 0 }},
		{"speeds ignored", enc(128, 38400, 129, 38400), func(t *unix.Termios) bool { return t.Ispeed == 0 }},
	} {
		tt := base
		parseModes(&tt, tc.modes)
		if !tc.check(&tt) {
			t.Errorf("%s: termios %+v", tc.name, tt)
		}
	}
}
