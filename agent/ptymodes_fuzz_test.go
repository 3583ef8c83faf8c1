//go:build linux

package agent

import (
	"encoding/binary"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"io"
	"log/slog"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// startTermios is a terminal state with every other bit set, so that a
// mode that sets a bit and one that clears it both show.
func startTermios() unix.Termios {
	t := unix.Termios{Iflag: 0x55555555, Oflag: 0xaaaaaaaa, Cflag: 0x55555555, Lflag: 0xaaaaaaaa}
	for i := range t.Cc {
		t.Cc[i] = uint8(100 + i)
	}
	return t
}

// FuzzTerminalModes checks pty-req's encoded terminal modes (RFC 4254 §8):
// only the bits and control characters the opcode tables name change, the
// last setting of an opcode wins, and nothing after TTY_OP_END, an opcode
// of 160 or more, or a truncated entry has any effect.
func FuzzTerminalModes(f *testing.F) {
	f.Add([]byte{53, 0, 0, 0, 0, 3, 0, 0, 0, 8, 91, 0, 0, 0, 1, 0})
	f.Add([]byte{1, 0, 0, 0, 255, 0, 53, 0, 0, 0, 1})
	f.Add([]byte{160, 0, 0, 0, 1, 53, 0, 0, 0, 1})
	f.Add([]byte{128, 0, 0, 0x96, 0, 129, 0, 0, 0x96, 0, 42, 0, 0, 0, 1, 42})
	f.Add([]byte{90, 0, 0, 0, 1, 91, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, modes []byte) {
		got := startTermios()
		parseModes(&got, modes)

		// The effective part: whole 5-byte entries up to the first stop.
		end := 0
		for end+5 <= len(modes) && modes[end] != 0 && modes[end] < 160 {
			end += 5
		}
		again := startTermios()
		parseModes(&again, modes[:end])
		if again != got {
			t.Fatalf("modes %x: bytes after offset %d changed the result", modes, end)
		}

		before := startTermios()
		var iMask, lMask, oMask, cMask uint32
		for _, b := range ttyIflags {
			iMask |= b
		}
		for _, b := range ttyLflags {
			lMask |= b
		}
		for _, b := range ttyOflags {
			oMask |= b
		}
		for _, b := range ttyCflags {
			cMask |= b
		}
		if (got.Iflag^before.Iflag)&^iMask != 0 || (got.Lflag^before.Lflag)&^lMask != 0 ||
			(got.Oflag^before.Oflag)&^oMask != 0 || (got.Cflag^before.Cflag)&^cMask != 0 {
			t.Fatalf("modes %x changed bits no opcode names", modes)
		}
		named := map[int]bool{}
		for _, i := range ttyChars {
			named[i] = true
		}
		for i := range got.Cc {
			if !named[i] && got.Cc[i] != before.Cc[i] {
				t.Fatalf("modes %x changed c_cc[%d], which no opcode names", modes, i)
			}
		}

		// The last entry of each opcode decides (CS7 and CS8 share bits,
		// so the c_cflag size opcodes are left to the mask check above).
		last := map[byte]uint32{}
		for i := 0; i < end; i += 5 {
			last[modes[i]] = binary.BigEndian.Uint32(modes[i+1 : i+5])
		}
		for op, arg := range last {
			if i, ok := ttyChars[op]; ok {
				want := uint8(arg)
				if arg == 255 {
					want = 0
				}
				if got.Cc[i] != want {
					t.Fatalf("modes %x: opcode %d gives c_cc %d, want %d", modes, op, got.Cc[i], want)
				}
			}
			check := func(flags map[byte]uint32, field uint32) {
				if bit, ok := flags[op]; ok && (field&bit != 0) != (arg != 0) {
					t.Fatalf("modes %x: opcode %d arg %d left flag %#x = %v", modes, op, arg, bit, field&bit != 0)
				}
			}
			check(ttyIflags, got.Iflag)
			check(ttyLflags, got.Lflag)
			check(ttyOflags, got.Oflag)
		}
	})
}

// FuzzSessionRequest drives the session's own request handler, before the
// start, with what the decoders see: whatever a decoder refuses, the
// handler refuses without changing the session; an accepted pty-req gets a
// terminal of the decoded (clamped) size and TERM. Accepted exec,
// subsystem and auth-agent-req would start something and are left to the
// integration tests.
func FuzzSessionRequest(f *testing.F) {
	types := []string{"pty-req", "exec", "subsystem", "auth-agent-req@openssh.com", "window-change", "signal"}
	f.Add(uint8(0), ssh.Marshal(sshmsg.PtyReq{Term: "xterm", Cols: 132, Rows: 43, Width: 0, Height: 0, Modes: ""}))
	f.Add(uint8(0), ssh.Marshal(sshmsg.PtyReq{Term: "xterm\x00", Cols: 80, Rows: 24, Width: 0, Height: 0, Modes: ""}))
	f.Add(uint8(0), ssh.Marshal(sshmsg.PtyReq{Term: "vt100", Cols: 0x10000, Rows: 0xffffffff, Width: 7, Height: 9, Modes: "\x35\x00\x00\x00\x00\x00"}))
	f.Add(uint8(1), ssh.Marshal(sshmsg.Exec{Command: "echo a\x00b"}))
	f.Add(uint8(1), []byte{0, 0, 0, 9, 'x'})
	f.Add(uint8(2), []byte{0, 0, 0})
	f.Add(uint8(3), []byte{0, 0, 0, 0})
	f.Add(uint8(4), ssh.Marshal(windowSize{80, 24, 0, 0}))
	f.Add(uint8(5), ssh.Marshal(sshmsg.Signal{Signal: "INT"}))
	f.Fuzz(func(t *testing.T, sel uint8, payload []byte) {
		typ := types[int(sel)%len(types)]
		var decErr error
		switch typ {
		case "pty-req":
			_, decErr = decodePtyReq(payload)
		case "exec":
			_, decErr = decodeExec(payload)
		case "subsystem":
			_, decErr = decodeSubsystem(payload)
		case "auth-agent-req@openssh.com":
			decErr = decodeAuthAgentReq(payload)
		case "window-change", "signal":
			// Without a pty or a process these are always refused.
			decErr = sshmsg.ErrMalformed
		}
		if decErr == nil && typ != "pty-req" {
			return
		}
		s := &session{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ok, run := s.handle(&ssh.Request{Type: typ, Payload: payload})
		if run != nil {
			t.Fatalf("%s %q started something", typ, payload)
		}
		if decErr != nil {
			if ok || s.pty != nil || s.kind != "" || s.agent != nil || s.term != "" {
				t.Fatalf("%s %q: refused by the decoder (%v) but the handler answered %v, session %+v", typ, payload, decErr, ok, s)
			}
			return
		}
		// An accepted pty-req.
		m, _ := decodePtyReq(payload)
		if !ok || s.pty == nil {
			t.Fatalf("pty-req %q refused", payload)
		}
		defer s.pty.close()
		ws, err := unix.IoctlGetWinsize(int(s.pty.tty.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			t.Fatal(err)
		}
		if s.term != m.Term || uint32(ws.Col) != m.Cols || uint32(ws.Row) != m.Rows ||
			uint32(ws.Xpixel) != m.Width || uint32(ws.Ypixel) != m.Height {
			t.Fatalf("pty-req %q gave TERM %q and size %+v, want %+v", payload, s.term, ws, m)
		}
	})
}
