// Package sshwire reads SSH wire types (RFC 4251 uint32, string, boolean)
// by hand, without x/crypto's Unmarshal. The fuzz targets of agent/ and
// gateway/ use it as an independent oracle for the decoders they test.
package sshwire

import "encoding/binary"

// Reader reads from a payload; after a short read every further value is
// zero and OK reports false.
type Reader struct {
	b   []byte
	bad bool
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// U32 reads a uint32.
func (r *Reader) U32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

// Str reads a length-prefixed string.
func (r *Reader) Str() string {
	n := r.U32()
	if r.bad || uint64(len(r.b)) < uint64(n) {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Bool reads a boolean byte (any non-zero value is true).
func (r *Reader) Bool() bool {
	if len(r.b) < 1 {
		r.bad = true
		return false
	}
	v := r.b[0] != 0
	r.b = r.b[1:]
	return v
}

// OK reports whether everything was read and nothing is left over.
func (r *Reader) OK() bool { return !r.bad && len(r.b) == 0 }
