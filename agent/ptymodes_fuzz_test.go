//go:build linux

package agent

import (
	"encoding/binary"
	"testing"

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
