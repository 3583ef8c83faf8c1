package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/sygaldry/sygaldry/link"
)

// runSession runs args (or a login shell when empty) through the agent at
// socket, once it proved to be peer, and returns the remote exit code: exit-status, or 128+N for
// exit-signal as OpenSSH's client reports it. With a terminal on stdin the
// session gets a pty of the terminal's size, stdin goes raw and window
// changes follow; otherwise stdin, stdout and stderr are plain pipes.
func runSession(socket string, peer link.Peer, args []string, s stdio) (int, error) {
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cl, err := link.Dial(dctx, socket, peer)
	cancel()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	sess, err := cl.NewSession()
	if err != nil {
		return 0, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = s.in, s.out, s.err

	// Locale, as ssh's SendEnv LANG LC_* does; the agent may refuse some.
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "LANG" || strings.HasPrefix(k, "LC_") {
			_ = sess.Setenv(k, v) // a refused variable is not an error (sshd's AcceptEnv)
		}
	}

	fd := int(s.in.Fd())
	tty := term.IsTerminal(fd)
	var wg sync.WaitGroup
	done := make(chan struct{})
	defer func() { close(done); wg.Wait() }()

	if tty {
		w, h, err := term.GetSize(fd)
		if err != nil || w <= 0 || h <= 0 {
			w, h = 80, 24
		}
		modes := gossh.TerminalModes{gossh.ECHO: 1, gossh.TTY_OP_ISPEED: 38400, gossh.TTY_OP_OSPEED: 38400}
		if err := sess.RequestPty(envOr("TERM", "xterm-256color"), h, w, modes); err != nil {
			return 0, fmt.Errorf("request pty: %w", err)
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return 0, fmt.Errorf("raw mode: %w", err)
		}
		defer term.Restore(fd, old)

		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer signal.Stop(winch)
			for {
				select {
				case <-done:
					return
				case <-winch:
					if w, h, err := term.GetSize(fd); err == nil {
						_ = sess.WindowChange(h, w) // best effort, as ssh; the session may be ending
					}
				}
			}
		}()
	} else {
		// No terminal: the remote side does not see our Ctrl-C as a byte,
		// so pass the signals on, as the session's process group gets them.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer signal.Stop(sigs)
			for {
				select {
				case <-done:
					return
				case sig := <-sigs:
					if name, ok := sshSignal[sig.(syscall.Signal)]; ok {
						_ = sess.Signal(name) // best effort; the command may have ended
					}
				}
			}
		}()
	}

	if len(args) == 0 {
		err = sess.Shell()
	} else {
		err = sess.Start(shellJoin(args))
	}
	if err != nil {
		return 0, fmt.Errorf("start: %w", err)
	}
	return exitCode(sess.Wait())
}

// exitCode maps Session.Wait's result to a process exit code.
func exitCode(err error) (int, error) {
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if sig := ee.Signal(); sig != "" {
			if n, ok := signalNumber[gossh.Signal(sig)]; ok {
				return 128 + n, nil
			}
			return 128, nil
		}
		return ee.ExitStatus(), nil
	}
	var missing *gossh.ExitMissingError
	if errors.As(err, &missing) {
		return 255, nil // as OpenSSH's client when no exit status came
	}
	return 0, err
}

var sshSignal = map[syscall.Signal]gossh.Signal{
	syscall.SIGINT: gossh.SIGINT, syscall.SIGTERM: gossh.SIGTERM,
	syscall.SIGHUP: gossh.SIGHUP, syscall.SIGQUIT: gossh.SIGQUIT,
}

// signalNumber is Linux's numbering of the RFC 4254 §6.10 signal names.
var signalNumber = map[gossh.Signal]int{
	gossh.SIGABRT: 6, gossh.SIGALRM: 14, gossh.SIGFPE: 8, gossh.SIGHUP: 1,
	gossh.SIGILL: 4, gossh.SIGINT: 2, gossh.SIGKILL: 9, gossh.SIGPIPE: 13,
	gossh.SIGQUIT: 3, gossh.SIGSEGV: 11, gossh.SIGTERM: 15,
	gossh.SIGUSR1: 10, gossh.SIGUSR2: 12,
}

// shellJoin quotes args for the remote shell (the agent runs exec commands
// as `$SHELL -c COMMAND`, like sshd), so each arrives as one word.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%_+=:,./-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
