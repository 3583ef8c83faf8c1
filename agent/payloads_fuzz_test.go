package agent

import (
	"bytes"
	"errors"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"io"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/sshwire"
)

// Fuzz targets for every payload the agent decodes. Each one checks the
// decoder against an independent reading of the wire format (internal/sshwire):
// a payload is accepted exactly when it is well formed and its values obey
// the rule the handler relies on, and an accepted payload re-encodes to the
// same bytes. Seeds: the f.Add calls and testdata/fuzz/<target>/.

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// addMalformed adds seeds every decoder must refuse (or, for a payload
// that is legitimately empty, accept): empty, truncated, trailing bytes, a
// length prefix larger than the payload.
func addMalformed(f *testing.F, valid []byte) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'x'})
	if len(valid) > 0 {
		f.Add(valid[:len(valid)-1])
		f.Add(append(append([]byte(nil), valid...), 0))
	}
}

func mustRoundTrip(t *testing.T, what string, msg any, payload []byte) {
	t.Helper()
	if got := ssh.Marshal(msg); !bytes.Equal(got, payload) {
		t.Fatalf("%s: accepted %q re-encodes as %q", what, payload, got)
	}
}

func FuzzEnv(f *testing.F) {
	for _, m := range []sshmsg.Env{{Name: "LANG", Value: "C.UTF-8"}, {Name: "LC_ALL", Value: ""}, {Name: "GIT_AUTHOR_NAME", Value: "Ålice ☃"},
		{Name: "", Value: "x"}, {Name: "A=B", Value: "c"}, {Name: "A", Value: "b\x00c"}, {Name: "A\x00B", Value: "c"}} {
		f.Add(ssh.Marshal(m))
	}
	addMalformed(f, ssh.Marshal(sshmsg.Env{Name: "LANG", Value: "C"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		name, value := w.Str(), w.Str()
		want := w.OK() && name != "" && !strings.ContainsAny(name, "=\x00") && !hasNUL(value)

		// The session's own handler, before the start: it keeps exactly
		// what the decoder accepts.
		s := &session{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ok, run := s.handle(&ssh.Request{Type: "env", Payload: payload})
		if run != nil {
			t.Fatal("env started something")
		}
		if ok != want {
			t.Fatalf("env %q: accepted %v, want %v", payload, ok, want)
		}
		if !ok {
			if len(s.env) != 0 {
				t.Fatalf("refused env %q was kept: %q", payload, s.env)
			}
			return
		}
		if len(s.env) != 1 || s.env[0] != [2]string{name, value} {
			t.Fatalf("env %q kept as %q", payload, s.env)
		}
		// It lands in the environment as one NAME=value entry.
		env := sessionEnv(nil, account{name: "u", home: "/h", shell: "/bin/sh"}, s.env, nil)
		n := 0
		for _, kv := range env {
			if hasNUL(kv) {
				t.Fatalf("environment entry with NUL: %q", kv)
			}
			if kv == name+"="+value {
				n++
			}
		}
		if n != 1 && name != "USER" && name != "LOGNAME" && name != "HOME" && name != "SHELL" && name != "PATH" {
			t.Fatalf("env %q appears %d times in %q", name, n, env)
		}
		m, err := decodeEnv(payload)
		if err != nil {
			t.Fatalf("handler accepted what decodeEnv refuses: %v", err)
		}
		mustRoundTrip(t, "env", m, payload)
	})
}

func FuzzPtyReq(f *testing.F) {
	modes := []byte{53, 0, 0, 0, 1, 3, 0, 0, 0, 127, 128, 0, 0, 0x96, 0, 0}
	for _, m := range []sshmsg.PtyReq{
		{Term: "xterm-256color", Cols: 80, Rows: 24, Width: 640, Height: 480, Modes: string(modes)},
		{Term: "", Cols: 0, Rows: 0, Width: 0, Height: 0, Modes: ""},
		{Term: "vt100", Cols: 0xffffffff, Rows: 0x10000, Width: 1, Height: 1, Modes: "\x00"},
		{Term: "xterm\x00", Cols: 80, Rows: 24, Width: 0, Height: 0, Modes: ""},
		{Term: strings.Repeat("x", maxTermLen+1), Cols: 80, Rows: 24, Width: 0, Height: 0, Modes: ""}} {
		f.Add(ssh.Marshal(m))
	}
	addMalformed(f, ssh.Marshal(sshmsg.PtyReq{Term: "xterm"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		term := w.Str()
		var dims [4]uint32
		for i := range dims {
			dims[i] = w.U32()
		}
		modes := w.Str()
		want := w.OK() && len(term) <= maxTermLen && !hasNUL(term)

		m, err := decodePtyReq(payload)
		if (err == nil) != want {
			t.Fatalf("pty-req %q: err %v, want accepted %v", payload, err, want)
		}
		if err != nil {
			return
		}
		if m.Term != term || m.Modes != modes {
			t.Fatalf("pty-req %q decoded as %+v", payload, m)
		}
		got := [4]uint32{m.Cols, m.Rows, m.Width, m.Height}
		for i := range dims {
			if got[i] != min(dims[i], 0xffff) {
				t.Fatalf("pty-req %q: size %v, want %v clamped to 16 bits", payload, got, dims)
			}
		}
		if got == dims {
			mustRoundTrip(t, "pty-req", m.PtyReq, payload)
		}
	})
}

func FuzzWindowChange(f *testing.F) {
	for _, w := range []windowSize{{80, 24, 640, 480}, {0, 0, 0, 0}, {0xffff, 0x10000, 0xffffffff, 1}} {
		f.Add(ssh.Marshal(w))
	}
	addMalformed(f, ssh.Marshal(windowSize{80, 24, 0, 0}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r := sshwire.NewReader(payload)
		dims := [4]uint32{r.U32(), r.U32(), r.U32(), r.U32()}
		w, err := decodeWindowChange(payload)
		if (err == nil) != r.OK() {
			t.Fatalf("window-change %q: err %v, want accepted %v", payload, err, r.OK())
		}
		if err != nil {
			return
		}
		got := [4]uint32{w.Cols, w.Rows, w.Width, w.Height}
		for i := range dims {
			if got[i] != min(dims[i], 0xffff) {
				t.Fatalf("window-change %q: size %v, want %v clamped to 16 bits", payload, got, dims)
			}
		}
	})
}

func FuzzExec(f *testing.F) {
	for _, c := range []string{"true", "", "scp -t /tmp", "echo a\x00b", "ls; exit 3"} {
		f.Add(ssh.Marshal(sshmsg.Exec{Command: c}))
	}
	f.Add(ssh.Marshal(sshmsg.Exec{Command: strings.Repeat("a", maxCommandLen)}))
	f.Add(ssh.Marshal(sshmsg.Exec{Command: strings.Repeat("a", maxCommandLen+1)}))
	addMalformed(f, ssh.Marshal(sshmsg.Exec{Command: "true"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		cmd := w.Str()
		want := w.OK() && len(cmd) <= maxCommandLen && !hasNUL(cmd)
		got, err := decodeExec(payload)
		if (err == nil) != want {
			t.Fatalf("exec %.64q: err %v, want accepted %v", payload, err, want)
		}
		if err == nil {
			if got != cmd {
				t.Fatalf("exec %.64q decoded as %.64q", payload, got)
			}
			mustRoundTrip(t, "exec", sshmsg.Exec{Command: got}, payload)
		}
	})
}

func FuzzSubsystem(f *testing.F) {
	for _, n := range []string{"sftp", "", "netconf", "sftp\x00"} {
		f.Add(ssh.Marshal(sshmsg.Subsystem{Name: n}))
	}
	addMalformed(f, ssh.Marshal(sshmsg.Subsystem{Name: "sftp"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		name := w.Str()
		got, err := decodeSubsystem(payload)
		if (err == nil) != w.OK() {
			t.Fatalf("subsystem %q: err %v, want accepted %v", payload, err, w.OK())
		}
		if err == nil {
			if got != name {
				t.Fatalf("subsystem %q decoded as %q", payload, got)
			}
			mustRoundTrip(t, "subsystem", sshmsg.Subsystem{Name: got}, payload)
		}
	})
}

func FuzzSignal(f *testing.F) {
	for _, n := range []string{"INT", "TERM", "KILL", "WINCH", "SIGINT", "int", "", "INT\x00", "TERM@openssh.com"} {
		f.Add(ssh.Marshal(sshmsg.Signal{Signal: n}))
	}
	addMalformed(f, ssh.Marshal(sshmsg.Signal{Signal: "HUP"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		name := w.Str()
		want, known := rfcSignals[name]
		if !known {
			want, known = extraSignals[name]
		}
		sig, err := decodeSignal(payload)
		if (err == nil) != (w.OK() && known) {
			t.Fatalf("signal %q: err %v, want accepted %v", payload, err, w.OK() && known)
		}
		if err == nil && sig != want {
			t.Fatalf("signal %q decoded as %v, want %v", payload, sig, want)
		}
	})
}

func FuzzAuthAgentReq(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(ssh.Marshal(struct{ S string }{"x"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if err := decodeAuthAgentReq(payload); (err == nil) != (len(payload) == 0) {
			t.Fatalf("auth-agent-req %q: err %v", payload, err)
		}
	})
}

func FuzzTag(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 7})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		want := len(payload) == 8 && !bytes.Equal(payload, make([]byte, 8))
		tag, err := decodeTag(payload)
		if (err == nil) != want || (want && !bytes.Equal(tag, payload)) {
			t.Fatalf("tag %q: %q, %v", payload, tag, err)
		}
	})
}

func FuzzDirectTCPIP(f *testing.F) {
	for _, m := range []sshmsg.DirectTCPIP{{Host: "localhost", Port: 8888, OrigHost: "127.0.0.1", OrigPort: 50000}, {Host: "::1", Port: 0, OrigHost: "", OrigPort: 0},
		{Host: "db", Port: 65536, OrigHost: "x", OrigPort: 1}, {Host: "db", Port: 5432, OrigHost: "x", OrigPort: 70000}, {Host: "db\x00evil", Port: 22, OrigHost: "x", OrigPort: 1}, {Host: "db", Port: 22, OrigHost: "x\x00", OrigPort: 1}, {Host: "", Port: 80, OrigHost: "", OrigPort: 0}} {
		f.Add(ssh.Marshal(m))
	}
	addMalformed(f, ssh.Marshal(sshmsg.DirectTCPIP{Host: "localhost", Port: 80, OrigHost: "127.0.0.1", OrigPort: 1}))
	f.Fuzz(func(t *testing.T, extra []byte) {
		w := sshwire.NewReader(extra)
		host, port, oh, op := w.Str(), w.U32(), w.Str(), w.U32()
		want := w.OK() && port <= 65535 && op <= 65535 && !hasNUL(host) && !hasNUL(oh)
		m, err := decodeDirectTCPIP(extra)
		if (err == nil) != want {
			t.Fatalf("direct-tcpip %q: err %v, want accepted %v", extra, err, want)
		}
		if err == nil {
			if m != (sshmsg.DirectTCPIP{Host: host, Port: port, OrigHost: oh, OrigPort: op}) {
				t.Fatalf("direct-tcpip %q decoded as %+v", extra, m)
			}
			mustRoundTrip(t, "direct-tcpip", m, extra)
		}
	})
}

func FuzzDirectStreamLocal(f *testing.F) {
	for _, m := range []sshmsg.DirectStreamLocal{{Path: "/run/app.sock", Reserved0: "", Reserved1: 0}, {Path: "", Reserved0: "", Reserved1: 0}, {Path: "/tmp/a\x00b", Reserved0: "", Reserved1: 0}, {Path: "@abstract", Reserved0: "x", Reserved1: 7}} {
		f.Add(ssh.Marshal(m))
	}
	addMalformed(f, ssh.Marshal(sshmsg.DirectStreamLocal{Path: "/tmp/s"}))
	f.Fuzz(func(t *testing.T, extra []byte) {
		w := sshwire.NewReader(extra)
		path, r0, r1 := w.Str(), w.Str(), w.U32()
		want := w.OK() && path != "" && !hasNUL(path)
		m, err := decodeDirectStreamLocal(extra)
		if (err == nil) != want {
			t.Fatalf("direct-streamlocal %q: err %v, want accepted %v", extra, err, want)
		}
		if err == nil {
			if m != (sshmsg.DirectStreamLocal{Path: path, Reserved0: r0, Reserved1: r1}) {
				t.Fatalf("direct-streamlocal %q decoded as %+v", extra, m)
			}
			mustRoundTrip(t, "direct-streamlocal", m, extra)
		}
	})
}

// FuzzTCPIPForward covers tcpip-forward and cancel-tcpip-forward (one format).
func FuzzTCPIPForward(f *testing.F) {
	for _, m := range []sshmsg.TCPIPForward{{Host: "localhost", Port: 8080}, {Host: "", Port: 0}, {Host: "*", Port: 65535}, {Host: "0.0.0.0", Port: 65536}, {Host: "a\x00", Port: 80}} {
		f.Add(ssh.Marshal(m))
	}
	addMalformed(f, ssh.Marshal(sshmsg.TCPIPForward{Host: "localhost", Port: 0}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		host, port := w.Str(), w.U32()
		want := w.OK() && port <= 65535 && !hasNUL(host)
		m, err := decodeTCPIPForward(payload)
		if (err == nil) != want {
			t.Fatalf("tcpip-forward %q: err %v, want accepted %v", payload, err, want)
		}
		if err == nil {
			if m != (sshmsg.TCPIPForward{Host: host, Port: port}) {
				t.Fatalf("tcpip-forward %q decoded as %+v", payload, m)
			}
			mustRoundTrip(t, "tcpip-forward", m, payload)
		}
	})
}

// FuzzStreamLocalForward covers (cancel-)streamlocal-forward@openssh.com.
func FuzzStreamLocalForward(f *testing.F) {
	for _, p := range []string{"/tmp/fwd.sock", "", "rel.sock", "/tmp/a\x00/b"} {
		f.Add(ssh.Marshal(sshmsg.StreamLocalForward{Path: p}))
	}
	addMalformed(f, ssh.Marshal(sshmsg.StreamLocalForward{Path: "/tmp/x"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		path := w.Str()
		want := w.OK() && path != "" && !hasNUL(path)
		m, err := decodeStreamLocalForward(payload)
		if (err == nil) != want {
			t.Fatalf("streamlocal-forward %q: err %v, want accepted %v", payload, err, want)
		}
		if err == nil {
			if m.Path != path {
				t.Fatalf("streamlocal-forward %q decoded as %q", payload, m.Path)
			}
			mustRoundTrip(t, "streamlocal-forward", m, payload)
		}
	})
}

// FuzzLinkRequest drives the link's own handlers for forwarding with
// payloads their decoders refuse: the channel open is rejected and the
// global request answered false, before anything is dialled or bound.
// Accepted payloads dial or listen, which the forwarding tests cover.
func FuzzLinkRequest(f *testing.F) {
	f.Add(uint8(0), ssh.Marshal(sshmsg.DirectTCPIP{Host: "localhost", Port: 70000, OrigHost: "", OrigPort: 0}))
	f.Add(uint8(0), ssh.Marshal(sshmsg.DirectTCPIP{Host: "local\x00host", Port: 22, OrigHost: "", OrigPort: 0}))
	f.Add(uint8(1), ssh.Marshal(sshmsg.DirectStreamLocal{Path: "/run/a\x00b", Reserved0: "", Reserved1: 0}))
	f.Add(uint8(1), ssh.Marshal(sshmsg.DirectStreamLocal{}))
	f.Add(uint8(2), ssh.Marshal(sshmsg.TCPIPForward{Host: "localhost", Port: 65536}))
	f.Add(uint8(3), ssh.Marshal(sshmsg.TCPIPForward{Host: "a\x00", Port: 8080}))
	f.Add(uint8(4), ssh.Marshal(sshmsg.StreamLocalForward{Path: "/tmp/x\x00y"}))
	f.Add(uint8(5), ssh.Marshal(sshmsg.StreamLocalForward{}))
	f.Add(uint8(2), []byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, sel uint8, payload []byte) {
		c := &linkConn{srv: &Server{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		switch sel % 6 {
		case 0, 1:
			typ, dec := "direct-tcpip", func() error { _, err := decodeDirectTCPIP(payload); return err }
			serve := c.serveDirectTCPIP
			if sel%6 == 1 {
				typ, dec = "direct-streamlocal@openssh.com", func() error { _, err := decodeDirectStreamLocal(payload); return err }
				serve = c.serveDirectStreamLocal
			}
			if dec() == nil {
				return
			}
			nc := &fakeNewChannel{typ: typ, extra: payload}
			serve(nc)
			if !nc.rejected || nc.reason != ssh.ConnectionFailed {
				t.Fatalf("%s %q: malformed open not rejected (rejected %v, reason %v)", typ, payload, nc.rejected, nc.reason)
			}
		case 2, 3:
			if _, err := decodeTCPIPForward(payload); err != nil {
				if ok, reply := c.tcpipForward(payload); ok || reply != nil {
					t.Fatalf("tcpip-forward %q: malformed request granted", payload)
				}
				if c.cancelTCPIPForward(payload) {
					t.Fatalf("cancel-tcpip-forward %q: malformed request granted", payload)
				}
			}
		case 4, 5:
			if _, err := decodeStreamLocalForward(payload); err != nil {
				if c.streamLocalForward(payload) || c.cancelStreamLocalForward(payload) {
					t.Fatalf("streamlocal-forward %q: malformed request granted", payload)
				}
			}
		}
		if len(c.forwards) != 0 {
			t.Fatalf("payload %q left forwards %v", payload, c.forwards)
		}
	})
}

// fakeNewChannel is a channel open that records its rejection.
type fakeNewChannel struct {
	typ      string
	extra    []byte
	rejected bool
	reason   ssh.RejectionReason
}

func (c *fakeNewChannel) Accept() (ssh.Channel, <-chan *ssh.Request, error) {
	return nil, nil, errors.New("fake channel")
}

func (c *fakeNewChannel) Reject(r ssh.RejectionReason, _ string) error {
	c.rejected, c.reason = true, r
	return nil
}

func (c *fakeNewChannel) ChannelType() string { return c.typ }
func (c *fakeNewChannel) ExtraData() []byte   { return c.extra }
