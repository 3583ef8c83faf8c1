package agent

import "syscall"

// rfcSignals are the names RFC 4254 §6.10 defines, without "SIG". sshd's
// sig2name knows exactly these; anything else is reported as
// "SIG@openssh.com" in exit-signal, and we do the same so clients that
// parse sshd's output parse ours.
var rfcSignals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT,
	"ALRM": syscall.SIGALRM,
	"FPE":  syscall.SIGFPE,
	"HUP":  syscall.SIGHUP,
	"ILL":  syscall.SIGILL,
	"INT":  syscall.SIGINT,
	"KILL": syscall.SIGKILL,
	"PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV,
	"TERM": syscall.SIGTERM,
	"USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// extraSignals are accepted in `signal` requests on top of the RFC list:
// job control is useful from scripted clients and costs nothing.
var extraSignals = map[string]syscall.Signal{
	"CONT":  syscall.SIGCONT,
	"STOP":  syscall.SIGSTOP,
	"TSTP":  syscall.SIGTSTP,
	"WINCH": syscall.SIGWINCH,
}

// signalByName maps a `signal` request's name to a signal.
func signalByName(name string) (syscall.Signal, bool) {
	if s, ok := rfcSignals[name]; ok {
		return s, true
	}
	s, ok := extraSignals[name]
	return s, ok
}

// exitSignalName is the name sent in exit-signal for sig.
func exitSignalName(sig syscall.Signal) string {
	for name, s := range rfcSignals {
		if s == sig {
			return name
		}
	}
	return "SIG@openssh.com"
}
