package gateway

import (
	"bytes"
	"testing"
)

func TestTermModeDecidesOnTheFirstDecisiveRequest(t *testing.T) {
	for _, c := range []struct {
		reqs []string
		pty  bool
	}{
		{[]string{"auth-agent-req@openssh.com", "pty-req", "env", "shell"}, true},
		{[]string{"env", "exec", "pty-req"}, false}, // a pty asked after exec changes nothing already written
		{[]string{"subsystem"}, false},
		{[]string{"pty-req", "exec"}, true},
	} {
		m := newTermMode()
		for _, r := range c.reqs {
			m.note(r)
		}
		if got := m.isPTY(); got != c.pty {
			t.Errorf("%v: pty = %v, want %v", c.reqs, got, c.pty)
		}
	}
	// No decisive request at all: no pty, after the bounded wait.
	if newTermMode().isPTY() {
		t.Error("undecided channel taken as a pty")
	}
}

func TestTermLinesEndings(t *testing.T) {
	pty, plain := newTermMode(), newTermMode()
	pty.note("pty-req")
	plain.note("exec")
	if got := pty.line("m", false); got != "\r\nsygaldry: m\r\n" {
		t.Errorf("pty line = %q", got)
	}
	if got := pty.line("m", true); got != "sygaldry: m\r\n" {
		t.Errorf("fresh pty line = %q", got)
	}
	if got := plain.line("m", false); got != "sygaldry: m\n" {
		t.Errorf("exec line = %q", got)
	}
	var b bytes.Buffer
	w := pty.writer(&b)
	w.Write([]byte("Creating container x ...\nStarting"))
	w.Write([]byte(" ...\r\n\n"))
	if got := b.String(); got != "Creating container x ...\r\nStarting ...\r\n\r\n" {
		t.Errorf("pty progress = %q", got)
	}
	b.Reset()
	plain.writer(&b).Write([]byte("a\nb\n"))
	if got := b.String(); got != "a\nb\n" {
		t.Errorf("exec progress = %q", got)
	}
}
