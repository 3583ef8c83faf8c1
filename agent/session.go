package agent

import (
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/fdpass"
)

// session is one "session" channel (RFC 4254 §6): requests before the
// start (env, pty-req, auth-agent-req), exactly one of shell/exec/subsystem,
// then window-change and signal while it runs.
//
// Goroutines: the channel's request loop (serveSession) owns every field
// below except those the runner writes before closing runDone. The runner
// owns the copies it starts and returns only after all of them ended.
type session struct {
	c     *linkConn
	ch    ssh.Channel
	log   *slog.Logger
	id    uint64
	start time.Time

	env     [][2]string // env requests, in order
	pty     *ptyDevice
	term    string
	agent   *agentForward
	tag     []byte // the gateway's tag for this session's connection (fdpass.TagRequest); nil: none
	fdID    uint64 // the gateway's descriptor id (fdpass.go); 0: the link carries the bytes
	kind    string // "shell", "exec" or "subsystem" once started
	command string
	proc    *process

	// gone is closed when the channel is closed by the peer or the link
	// died: nothing more can be sent, and a running process is hung up.
	gone    chan struct{}
	runDone chan struct{} // closed by the runner; nil until started
	exit    exitStatus    // written by the runner before runDone

	bytesIn, bytesOut atomic.Int64
}

func (c *linkConn) serveSession(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		c.log.Debug("session accept failed", "err", err)
		return
	}
	id := c.srv.nextID.Add(1)
	s := &session{
		c:     c,
		ch:    ch,
		id:    id,
		log:   c.log.With("channel", id, "type", "session"),
		start: time.Now(),
		gone:  make(chan struct{}),
	}
	for req := range reqs {
		ok, run := s.handle(req)
		if err := req.Reply(ok, nil); err != nil {
			s.log.Debug("request reply failed", "request", req.Type, "err", err)
		}
		// Started only after the reply, so exit-status and close can never
		// overtake the success reply to exec/shell/subsystem.
		if run != nil {
			go run()
		}
	}
	// reqs closed: the channel is closed (the peer closed it, or the link died).
	s.closed()
}

// handle processes one request without blocking on the process: x/crypto
// delivers requests from the link's read loop, so a slow handler would stall
// every channel on the link. It returns the reply and, for a start, the
// runner to launch.
func (s *session) handle(req *ssh.Request) (bool, func()) {
	switch req.Type {
	case "env":
		m, err := decodeEnv(req.Payload)
		if s.kind != "" || err != nil {
			return false, nil
		}
		// The gateway applied the AcceptEnv allowlist before forwarding.
		s.env = append(s.env, [2]string{m.Name, m.Value})
		return true, nil
	case "pty-req":
		m, err := decodePtyReq(req.Payload)
		if s.kind != "" || s.pty != nil || err != nil {
			return false, nil
		}
		d, err := openPTY(m.window(), []byte(m.Modes))
		if err != nil {
			s.log.Warn("pty allocation failed", "err", err)
			return false, nil
		}
		s.pty, s.term = d, m.Term
		return true, nil
	case "window-change":
		w, err := decodeWindowChange(req.Payload)
		if s.pty == nil || err != nil {
			return false, nil
		}
		// Applied at once: nothing queues, so a burst before exec cannot
		// fill a buffer and block the loop (shellhub#6837).
		if err := s.pty.resize(w); err != nil {
			s.log.Debug("window-change failed", "err", err)
			return false, nil
		}
		return true, nil
	case "shell":
		return s.startProcess("shell", "")
	case "exec":
		command, err := decodeExec(req.Payload)
		if err != nil {
			return false, nil
		}
		return s.startProcess("exec", command)
	case "subsystem":
		name, err := decodeSubsystem(req.Payload)
		if err != nil || name != "sftp" {
			return false, nil
		}
		return s.startSFTP()
	case "signal":
		sig, err := decodeSignal(req.Payload)
		if s.proc == nil || err != nil || !s.proc.running() {
			return false, nil
		}
		if err := s.proc.signalGroup(sig); err != nil {
			s.log.Debug("signal failed", "signal", sig, "err", err)
			return false, nil
		}
		return true, nil
	case fdpass.IDRequest:
		id, err := decodeFDID(req.Payload)
		if s.kind != "" || s.fdID != 0 || err != nil || !s.c.hasFDs() {
			return false, nil
		}
		s.fdID = id
		return true, nil
	case fdpass.TagRequest:
		// Only on a link the gateway shares, once, before anything runs.
		tag, err := decodeTag(req.Payload)
		if s.kind != "" || s.tag != nil || err != nil || s.c == nil || !s.c.shared.Load() {
			return false, nil
		}
		s.tag = tag
		return true, nil
	case "auth-agent-req@openssh.com":
		if s.kind != "" || s.agent != nil {
			return false, nil
		}
		if decodeAuthAgentReq(req.Payload) != nil {
			return false, nil
		}
		a, err := s.c.startAgentForward(s.id, s.tag)
		if err != nil {
			s.log.Warn("agent forwarding failed", "err", err)
			return false, nil
		}
		s.agent = a
		return true, nil
	default:
		// break (RFC 4335), x11-req, eow@openssh.com, ...: refused, like an
		// sshd without X11 forwarding. Never blocks.
		return false, nil
	}
}

// workDir is $HOME, or "/" when it is missing (sshd: "Could not chdir to
// home directory").
func (s *session) workDir() string {
	home := s.c.srv.acct.home
	if fi, err := os.Stat(home); err != nil || !fi.IsDir() {
		s.log.Warn("home directory unusable, using /", "home", home, "err", err)
		return "/"
	}
	return home
}

// startDir is where shells and commands start: the project's workspace when
// the container names one ($SYGALDRY_WORKSPACE, an existing directory),
// else workDir. sftp keeps $HOME.
func (s *session) startDir() string {
	for _, kv := range s.c.srv.baseEnv {
		name, ws, _ := strings.Cut(kv, "=")
		if name != workspaceEnv {
			continue
		}
		if fi, err := os.Stat(ws); ws != "" && err == nil && fi.IsDir() {
			return ws
		}
		s.log.Warn("workspace unusable, starting in the home directory", "workspace", ws)
		break
	}
	return s.workDir()
}

func (s *session) environ() []string {
	var own [][2]string
	if s.pty != nil {
		if s.term != "" {
			own = append(own, [2]string{"TERM", s.term})
		}
		own = append(own, [2]string{"SSH_TTY", s.pty.name})
	}
	if s.agent != nil {
		own = append(own, [2]string{"SSH_AUTH_SOCK", s.agent.path})
	}
	return sessionEnv(s.c.srv.baseEnv, s.c.srv.acct, s.env, own)
}

// startProcess runs the login shell like sshd: a shell request gets a login
// shell (argv[0] "-bash"), an exec gets `$SHELL -c <command>` with the
// command string untouched — scp -O, rsync and VS Code rely on the remote
// shell parsing it.
func (s *session) startProcess(kind, command string) (bool, func()) {
	if s.kind != "" {
		return false, nil
	}
	shell := s.c.srv.acct.shell
	cmd := &exec.Cmd{Path: shell}
	if kind == "shell" {
		cmd.Args = []string{"-" + filepath.Base(shell)}
	} else {
		cmd.Args = []string{filepath.Base(shell), "-c", command}
	}
	cmd.Dir = s.startDir()
	cmd.Env = s.environ()
	if kind == "shell" && s.pty != nil {
		// An interactive login: the ports listening in the container, for
		// a terminal user to find (ports.go). Never on exec or subsystems,
		// whose output is data.
		if b := portsBanner(s.c.srv.ProcDir, cmd.Env); b != nil {
			if _, err := s.pty.tty.Write(b); err != nil {
				s.log.Debug("ports banner not written", "err", err)
			}
		}
	}
	p, err := startProcess(cmd, s.pty)
	if err != nil {
		s.log.Warn("start failed", "kind", kind, "shell", shell, "err", err)
		return false, nil
	}
	s.kind, s.command, s.proc = kind, command, p
	s.runDone = make(chan struct{})
	if s.offload(p) { // fdpass.go: before the reply, so the gateway finds them
		return true, func() { s.awaitProcess(p) }
	}
	return true, func() { s.runProcess(p) }
}

// countingWriter counts what reaches the channel, for the close log line.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// runProcess moves the process's I/O and ends the channel in the one order
// clients rely on (RFC 4254 §6.10; tailscale#18256, gokrazy/breakglass#29):
// all of stdout and stderr, then exit-status, then EOF, then CLOSE.
func (s *session) runProcess(p *process) {
	defer close(s.runDone)
	stdout := countingWriter{s.ch, &s.bytesOut}
	var outputs, input sync.WaitGroup
	input.Add(1)
	if p.pty == nil {
		outputs.Add(2)
		go func() {
			defer outputs.Done()
			copyOutput(stdout, p.stdout)
		}()
		go func() {
			defer outputs.Done()
			copyOutput(countingWriter{s.ch.Stderr(), &s.bytesOut}, p.stderr)
		}()
		go func() {
			defer input.Done()
			s.copyInput(p.stdin)
			// Client EOF: close stdin so cat, sort, sha256sum finish. Output
			// keeps flowing (half-close).
			p.stdin.Close()
		}()
	} else {
		drain := orDefault(s.c.srv.PTYDrain, defaultPTYDrain)
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			if err := p.pty.copyOut(stdout, p.exited, drain); err != nil {
				s.log.Debug("pty output stopped", "err", err)
			}
		}()
		go func() {
			defer input.Done()
			// A terminal has no half-close: at client EOF we just stop
			// writing, like sshd.
			s.copyInput(p.pty.master)
		}()
	}
	outputsDone := make(chan struct{})
	go func() {
		outputs.Wait()
		close(outputsDone)
	}()

	p.wait()
	if p.pty != nil {
		p.pty.startDrain(orDefault(s.c.srv.PTYDrain, defaultPTYDrain))
	}
	// Without a pty, wait for the pipes to close even if background jobs
	// hold them, as sshd does; stop only when the client is gone.
	select {
	case <-outputsDone:
	case <-s.gone:
		p.closeOutputs()
		<-outputsDone
	}
	s.exit = p.status
	s.sendExit(p.status)
	// Unblocks an input copy stuck writing to a full stdin; the copy itself
	// ends when the peer's close makes the channel read return EOF.
	p.closeInput()
	input.Wait()
}

// awaitProcess ends an offloaded session: the gateway copies the bytes and
// holds exit-status until it drained the output, so the agent only reaps
// the process and reports how it ended.
func (s *session) awaitProcess(p *process) {
	defer close(s.runDone)
	p.wait()
	s.exit = p.status
	s.sendExit(p.status)
}

// copyOutput copies one output stream to the channel. If the channel is
// gone the pipe is closed, so writers get EPIPE instead of blocking.
func copyOutput(w io.Writer, r *os.File) {
	io.Copy(w, r)
	r.Close()
}

// copyInput feeds channel data to the process. When the process stops
// reading (exited, closed stdin), the rest is discarded so the client is
// never stuck on a full window.
func (s *session) copyInput(w io.Writer) {
	n, err := io.Copy(w, s.ch)
	s.bytesIn.Add(n)
	if err != nil {
		n, _ := io.Copy(io.Discard, s.ch)
		s.bytesIn.Add(n)
	}
}

// sendExit ends the channel. A signal death is sent as exit-signal like
// sshd, followed by exit-status 128+N: the OpenSSH client ignores
// exit-signal and would exit 255 without a status, while x/crypto clients
// get both the signal name and the shell-style code.
func (s *session) sendExit(st exitStatus) {
	if st.signal != 0 {
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(sshmsg.ExitSignal{
			Signal:     exitSignalName(st.signal),
			CoreDumped: st.core,
		}))
	}
	s.ch.SendRequest("exit-status", false, ssh.Marshal(sshmsg.ExitStatus{Status: uint32(st.code)}))
	s.ch.CloseWrite()
	s.ch.Close()
}

// closed runs when the channel is closed. If the process still runs, the
// client went away without waiting for it (kill -9 of ssh, a dropped
// network, the gateway's admin kill) and we hang it up.
func (s *session) closed() {
	close(s.gone)
	if s.proc != nil && s.proc.running() {
		s.hangup()
	}
	if s.runDone != nil {
		<-s.runDone
	}
	if s.agent != nil {
		s.agent.close()
	}
	if s.pty != nil {
		s.pty.close()
	}
	attrs := []any{"kind", s.kind, "pty", s.pty != nil, "bytes_in", s.bytesIn.Load(), "bytes_out", s.bytesOut.Load(),
		"duration", time.Since(s.start).Round(time.Millisecond)}
	if s.kind == "exec" {
		cmd := s.command
		if len(cmd) > 200 {
			cmd = cmd[:200] + "..."
		}
		attrs = append(attrs, "command", cmd)
	}
	if s.runDone != nil {
		attrs = append(attrs, "exit", s.exit.code)
		if s.exit.signal != 0 {
			attrs = append(attrs, "signal", exitSignalName(s.exit.signal))
		}
	}
	s.log.Info("channel closed", attrs...)
}

// hangup ends the processes of a session whose client is gone.
//
// Goal: no orphans from ordinary commands (`sleep 1000 & sleep 1001` both
// die), while jobs the user detached on purpose survive, as with sshd:
//
//  1. With a pty, close the master. The kernel hangs the terminal up:
//     SIGHUP+SIGCONT to the session leader and the foreground group; an
//     interactive shell passes SIGHUP on to its jobs.
//  2. SIGHUP, then SIGCONT (so stopped jobs act on it), to the session's
//     process group — every process we started and the background jobs of
//     a non-interactive shell. `nohup cmd &` ignores SIGHUP and survives;
//     `setsid cmd &` and tmux live in another session and are not
//     addressed at all.
//  3. After HangupGrace, if the leader is still alive it ignored or
//     mishandled SIGHUP: SIGKILL the leader only, never the group, so a
//     `nohup` job in the same group still survives. Children that inherited
//     an ignored SIGHUP from such a leader survive too: that is what
//     ignoring SIGHUP asks for.
//
// Without a pty, sshd itself sends no signal on disconnect (processes die
// of EPIPE later, or never: kubernetes#89031), which leaves `rsync
// --server` and friends behind; step 2 is the deliberate difference.
func (s *session) hangup() {
	p := s.proc
	if p.pty != nil {
		p.pty.closeMaster()
	}
	p.signalGroup(syscall.SIGHUP)
	p.signalGroup(syscall.SIGCONT)
	grace := orDefault(s.c.srv.HangupGrace, defaultHangupGrace)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		s.log.Info("client gone, process hung up", "pid", p.pid)
		return
	case <-t.C:
	}
	s.log.Info("client gone, process ignored SIGHUP, killing it", "pid", p.pid, "grace", grace)
	if err := p.signalLeader(syscall.SIGKILL); err != nil {
		s.log.Debug("kill failed", "pid", p.pid, "err", err)
	}
}
