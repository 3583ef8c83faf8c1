package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/sshwire"
	"github.com/sygaldry/sygaldry/sessions"
)

// Fuzz targets for the payloads the gateway decodes: client session
// requests it observes or filters, forwarding channel opens it records, and
// the exit messages the (untrusted) agent sends back. Each checks the
// decoder against an independent reading of the wire format (internal/sshwire).
// Seeds: the f.Add calls and testdata/fuzz/<target>/.

// malformedSeeds are payloads every decoder refuses: empty, truncated,
// trailing bytes, a length prefix larger than the payload.
func malformedSeeds(valid []byte) [][]byte {
	return [][]byte{{}, {0, 0, 0}, {0xff, 0xff, 0xff, 0xff, 'x'}, valid[:len(valid)-1], append(append([]byte(nil), valid...), 0)}
}

func addMalformed(f *testing.F, valid []byte) {
	for _, p := range malformedSeeds(valid) {
		f.Add(p)
	}
}

// discardState is a connection of a server with an empty configuration.
func discardState() *connState {
	s := &Server{live: config.NewLive(&config.Config{})}
	return &connState{s: s, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// FuzzEnvRequest drives observeRequest, the gateway's filter in front of the
// agent: an env request passes only when it is well formed, its name and
// value fit an environment block, and accept_env allows the name.
func FuzzEnvRequest(f *testing.F) {
	for _, e := range []sshmsg.Env{{Name: "LANG", Value: "C.UTF-8"}, {Name: "LC_ALL", Value: ""}, {Name: "GIT_AUTHOR_NAME", Value: "Ålice"},
		{Name: "LD_PRELOAD", Value: "/tmp/x.so"}, {Name: "PATH", Value: "/tmp"}, {Name: "BASH_ENV", Value: "/tmp/x"}, {Name: "LC_X=Y", Value: "z"},
		{Name: "LC_\x00", Value: "z"}, {Name: "LANG", Value: "C\x00LD_PRELOAD=/x"}, {Name: "", Value: ""}, {Name: "LANGUAGE", Value: "en"}} {
		f.Add(gossh.Marshal(e))
	}
	addMalformed(f, gossh.Marshal(sshmsg.Env{Name: "LANG", Value: "C"}))
	accept := []string{"LANG", "LC_*", "GIT_*"}
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		name, value := w.Str(), w.Str()
		allowed := name == "LANG" || strings.HasPrefix(name, "LC_") || strings.HasPrefix(name, "GIT_")
		want := w.OK() && allowed && !strings.ContainsAny(name, "=\x00") && !strings.Contains(value, "\x00")

		got := observeRequest(discardState(), nil, accept, &gossh.Request{Type: "env", Payload: payload})
		if got != want {
			t.Fatalf("env %q: passed %v, want %v", payload, got, want)
		}
		if got {
			e, err := decodeEnv(payload)
			if err != nil || e != (sshmsg.Env{Name: name, Value: value}) {
				t.Fatalf("env %q passed but decodes as %+v, %v", payload, e, err)
			}
			if !bytes.Equal(gossh.Marshal(e), payload) {
				t.Fatalf("env %q passed but re-encodes differently", payload)
			}
		}
	})
}

// FuzzSessionStart drives observeRequest for exec and subsystem: a
// malformed request stops at the gateway; a well-formed one is recorded in
// the registry as what it is.
func FuzzSessionStart(f *testing.F) {
	for _, c := range []string{"true", "", "scp -t /tmp", "a\x00b", "sftp", "netconf"} {
		f.Add(false, gossh.Marshal(sshmsg.Exec{Command: c}))
		f.Add(true, gossh.Marshal(sshmsg.Subsystem{Name: c}))
	}
	for _, p := range malformedSeeds(gossh.Marshal(sshmsg.Exec{Command: "true"})) {
		f.Add(false, p)
		f.Add(true, p)
	}
	f.Fuzz(func(t *testing.T, subsystem bool, payload []byte) {
		w := sshwire.NewReader(payload)
		s := w.Str()
		typ, kind := "exec", "exec"
		if subsystem {
			typ, kind = "subsystem", "subsystem"
			if s == "sftp" {
				kind = "sftp"
			}
		}
		reg := sessions.NewRegistry(nil)
		sess := reg.Add(sessions.Info{Kind: "session"}, nil)
		defer reg.End(sess, "")
		got := observeRequest(discardState(), sess, nil, &gossh.Request{Type: typ, Payload: payload})
		if got != w.OK() {
			t.Fatalf("%s %q: passed %v, want %v", typ, payload, got, w.OK())
		}
		info := sess.Info()
		if !got {
			if info.Kind != "session" || info.Command != "" {
				t.Fatalf("refused %s %q was recorded: %+v", typ, payload, info)
			}
			return
		}
		if info.Kind != kind {
			t.Fatalf("%s %q recorded as kind %q, want %q", typ, payload, info.Kind, kind)
		}
		var dec string
		var err error
		if subsystem {
			dec, err = decodeSubsystem(payload)
		} else {
			dec, err = decodeExec(payload)
		}
		if err != nil || dec != s {
			t.Fatalf("%s %q decodes as %q, %v", typ, payload, dec, err)
		}
	})
}

// FuzzExitStatus: the agent's exit-status is exactly one uint32.
func FuzzExitStatus(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 130})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Add([]byte{0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		code, err := decodeExitStatus(payload)
		if (err == nil) != (len(payload) == 4) {
			t.Fatalf("exit-status %x: err %v", payload, err)
		}
		if err == nil && uint32(code) != binary.BigEndian.Uint32(payload) {
			t.Fatalf("exit-status %x decoded as %d", payload, code)
		}
	})
}

// FuzzExitSignal: the signal name the agent reports reaches the registry
// and the history only when it is a short name of safe characters.
func FuzzExitSignal(f *testing.F) {
	for _, m := range []sshmsg.ExitSignal{{Signal: "TERM", CoreDumped: false, Error: "", Lang: ""}, {Signal: "SEGV", CoreDumped: true, Error: "core dumped", Lang: "en"},
		{Signal: "SIG@openssh.com", CoreDumped: false, Error: "", Lang: ""}, {Signal: "", CoreDumped: false, Error: "", Lang: ""}, {Signal: "\x1b[2J\x1b]0;pwned\a", CoreDumped: false, Error: "", Lang: ""},
		{Signal: "TERM\nfake history line", CoreDumped: false, Error: "", Lang: ""}, {Signal: strings.Repeat("A", maxSignalName+1), CoreDumped: false, Error: "", Lang: ""},
		{Signal: strings.Repeat("A", maxSignalName), CoreDumped: false, Error: "", Lang: ""}, {Signal: "KILL", CoreDumped: false, Error: "\x00", Lang: ""}} {
		f.Add(gossh.Marshal(m))
	}
	addMalformed(f, gossh.Marshal(sshmsg.ExitSignal{Signal: "TERM"}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := sshwire.NewReader(payload)
		name := w.Str()
		w.Bool()
		w.Str()
		w.Str()
		safe := name != "" && len(name) <= maxSignalName
		for _, c := range name {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@._-", c) {
				safe = false
			}
		}
		got, err := decodeExitSignal(payload)
		if (err == nil) != (w.OK() && safe) {
			t.Fatalf("exit-signal %q: err %v, want accepted %v", payload, err, w.OK() && safe)
		}
		if err == nil && got != name {
			t.Fatalf("exit-signal %q decoded as %q", payload, got)
		}
	})
}

// FuzzForwardTarget: what the registry records for a forwarding channel is
// exactly the target of a well-formed open, and nothing for a malformed one.
func FuzzForwardTarget(f *testing.F) {
	for _, d := range []sshmsg.DirectTCPIP{{Host: "localhost", Port: 8888, OrigHost: "127.0.0.1", OrigPort: 5000}, {Host: "::1", Port: 22, OrigHost: "", OrigPort: 0},
		{Host: "db", Port: 65536, OrigHost: "", OrigPort: 0}, {Host: "db", Port: 1, OrigHost: "", OrigPort: 70000}, {Host: "", Port: 0, OrigHost: "", OrigPort: 0}} {
		f.Add(false, gossh.Marshal(d))
	}
	for _, d := range []sshmsg.DirectStreamLocal{{Path: "/run/app.sock", Reserved0: "", Reserved1: 0}, {Path: "", Reserved0: "", Reserved1: 0}, {Path: "/a\x00b", Reserved0: "", Reserved1: 0}} {
		f.Add(true, gossh.Marshal(d))
	}
	for _, p := range malformedSeeds(gossh.Marshal(sshmsg.DirectTCPIP{Host: "h", Port: 1, OrigHost: "o", OrigPort: 2})) {
		f.Add(false, p)
		f.Add(true, p)
	}
	f.Fuzz(func(t *testing.T, streamlocal bool, extra []byte) {
		w := sshwire.NewReader(extra)
		var typ, want string
		if streamlocal {
			typ = "direct-streamlocal@openssh.com"
			path := w.Str()
			w.Str()
			w.U32()
			if w.OK() && path != "" && !strings.Contains(path, "\x00") {
				want = path
			}
			if _, err := decodeDirectStreamLocal(extra); (err == nil) != (want != "") {
				t.Fatalf("direct-streamlocal %q: err %v, want accepted %v", extra, err, want != "")
			}
		} else {
			typ = "direct-tcpip"
			host, port := w.Str(), w.U32()
			w.Str()
			op := w.U32()
			if w.OK() && port <= 65535 && op <= 65535 {
				want = net.JoinHostPort(host, strconv.Itoa(int(port)))
			}
		}
		if got := forwardTarget(typ, extra); got != want {
			t.Fatalf("%s %q: target %q, want %q", typ, extra, got, want)
		}
	})
}

// FuzzAgentChannel: a channel the agent opens towards the client passes
// only with the extra data its type defines.
func FuzzAgentChannel(f *testing.F) {
	types := []string{"forwarded-tcpip", "forwarded-streamlocal@openssh.com", "auth-agent@openssh.com", "session", "direct-tcpip"}
	for _, m := range []sshmsg.ForwardedTCPIP{{Host: "localhost", Port: 8080, OrigHost: "127.0.0.1", OrigPort: 40000}, {Host: "", Port: 0, OrigHost: "", OrigPort: 0},
		{Host: "x", Port: 65536, OrigHost: "y", OrigPort: 1}, {Host: "x", Port: 1, OrigHost: "y", OrigPort: 65536}} {
		f.Add(uint8(0), gossh.Marshal(m))
	}
	for _, m := range []sshmsg.ForwardedStreamLocal{{Path: "/tmp/fwd.sock", Reserved: ""}, {Path: "", Reserved: ""}, {Path: "/a\x00b", Reserved: ""}} {
		f.Add(uint8(1), gossh.Marshal(m))
	}
	f.Add(uint8(2), []byte{})
	f.Add(uint8(2), []byte{0})
	f.Add(uint8(3), []byte{})
	f.Add(uint8(4), gossh.Marshal(sshmsg.DirectTCPIP{Host: "h", Port: 1, OrigHost: "o", OrigPort: 2}))
	for _, p := range malformedSeeds(gossh.Marshal(sshmsg.ForwardedTCPIP{Host: "h", Port: 1, OrigHost: "o", OrigPort: 2})) {
		f.Add(uint8(0), p)
		f.Add(uint8(1), p)
	}
	f.Fuzz(func(t *testing.T, sel uint8, extra []byte) {
		typ := types[int(sel)%len(types)]
		w := sshwire.NewReader(extra)
		var want bool
		switch typ {
		case "forwarded-tcpip":
			w.Str()
			port := w.U32()
			w.Str()
			op := w.U32()
			want = w.OK() && port <= 65535 && op <= 65535
		case "forwarded-streamlocal@openssh.com":
			path := w.Str()
			w.Str()
			want = w.OK() && path != "" && !strings.Contains(path, "\x00")
		case "auth-agent@openssh.com":
			want = len(extra) == 0
		}
		if err := decodeAgentChannel(typ, extra); (err == nil) != want {
			t.Fatalf("%s %q: err %v, want accepted %v", typ, extra, err, want)
		}
		nc := &fakeNewChannel{typ: typ, extra: extra}
		if got := discardState().wellFormedAgentChannel(nc, nc.ChannelType(), nc.ExtraData()); got != want || nc.rejected == got {
			t.Fatalf("%s %q: passed %v (rejected %v), want %v", typ, extra, got, nc.rejected, want)
		}
	})
}

// fakeNewChannel is a channel open that records its rejection.
type fakeNewChannel struct {
	typ      string
	extra    []byte
	rejected bool
}

func (c *fakeNewChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	return nil, nil, errors.New("fake channel")
}

func (c *fakeNewChannel) Reject(gossh.RejectionReason, string) error {
	c.rejected = true
	return nil
}

func (c *fakeNewChannel) ChannelType() string { return c.typ }
func (c *fakeNewChannel) ExtraData() []byte   { return c.extra }
