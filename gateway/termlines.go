package gateway

import (
	"io"
	"sync"
	"time"
)

// termMode is what a session channel turned out to be: one with a pty
// (its first decisive request is pty-req) or not (shell, exec or subsystem
// first). The lines the gateway itself writes to the user (the progress of
// a container start, a refusal, an admin's kill, a shutdown) end in "\r\n"
// on a pty, whose terminal on the client is raw so a bare "\n" would
// staircase, and in a plain "\n" otherwise, as a program's stderr does.
type termMode struct {
	once    sync.Once
	decided chan struct{} // closed once pty is known
	pty     bool          // read after decided is closed
}

func newTermMode() *termMode { return &termMode{decided: make(chan struct{})} }

// note sees each request of the channel in arrival order.
func (m *termMode) note(typ string) {
	switch typ {
	case "pty-req":
		m.decide(true)
	case "shell", "exec", "subsystem":
		m.decide(false)
	}
}

func (m *termMode) decide(pty bool) {
	m.once.Do(func() {
		m.pty = pty
		close(m.decided)
	})
}

// termDecideWait bounds the wait for a channel's first decisive request
// before the gateway writes a line: OpenSSH sends pty-req, then shell or
// exec, right after the channel opens.
const termDecideWait = time.Second

// isPTY reports whether the channel has a pty, waiting for the answer at
// most termDecideWait (no answer by then: no pty).
func (m *termMode) isPTY() bool {
	select {
	case <-m.decided:
	case <-time.After(termDecideWait):
		m.decide(false)
		<-m.decided
	}
	return m.pty
}

// line is msg as one line of the gateway's own on the channel's stderr:
// "sygaldry: msg" and the line ending; on a pty it starts at column 0
// (the cursor may be mid-line) when fresh is false.
func (m *termMode) line(msg string, fresh bool) string {
	if !m.isPTY() {
		return "sygaldry: " + msg + "\n"
	}
	if fresh {
		return "sygaldry: " + msg + "\r\n"
	}
	return "\r\nsygaldry: " + msg + "\r\n"
}

// writer returns w with every bare "\n" written as "\r\n" when the channel
// has a pty: for the progress lines of a container start, which come from
// the container manager with plain line ends.
func (m *termMode) writer(w io.Writer) io.Writer { return &termWriter{m: m, w: w} }

type termWriter struct {
	m *termMode
	w io.Writer
}

func (t *termWriter) Write(p []byte) (int, error) {
	if !t.m.isPTY() {
		return t.w.Write(p)
	}
	out := make([]byte, 0, len(p)+8)
	for i, c := range p {
		if c == '\n' && (i == 0 || p[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
