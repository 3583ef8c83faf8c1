// Package krl reads OpenSSH key revocation lists (the binary files
// `ssh-keygen -k` writes; format in OpenSSH's PROTOCOL.krl) and answers
// whether a key or certificate is revoked, with the rules of OpenSSH's
// ssh_krl_check_key: a plain key is revoked by its blob or its SHA1/SHA256
// hash; a certificate is revoked by its own key, by its key ID or serial
// under its CA (or under any CA), or when its CA key is revoked.
//
// The parser is strict: anything it does not understand (an unknown section,
// a critical extension, trailing bytes) is an error, so a revocation is never
// skipped silently. Signed KRLs are refused, as OpenSSH 9.4 and later do.
package krl

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	gossh "golang.org/x/crypto/ssh"
)

// Magic starts every KRL ("SSHKRL\n\0").
const Magic = "SSHKRL\n\x00"

const (
	formatVersion = 1

	sectionCertificates = 1
	sectionExplicitKey  = 2
	sectionSHA1         = 3
	sectionSignature    = 4
	sectionSHA256       = 5
	sectionExtension    = 255

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
	certExtension    = 0x39
)

// maxBitmapBits bounds a serial bitmap so a hostile or corrupt file cannot
// make the gateway expand billions of serials.
const maxBitmapBits = 1 << 24

// KRL is a parsed revocation list.
type KRL struct {
	Version uint64 // krl_version, increasing with each change
	Comment string

	keys   map[string]bool // plain key blobs
	sha1s  map[string]bool
	sha256 map[string]bool
	certs  map[string]*caRevocations // by CA key blob; "" applies to every CA
}

type caRevocations struct {
	ids     map[string]bool
	ranges  []serialRange
	bitmaps []serialBitmap
}

type serialRange struct{ lo, hi uint64 }

// serialBitmap revokes serial off+N for each bit N set (N from the least
// significant bit), as OpenSSH's BN_is_bit_set reading.
type serialBitmap struct {
	off  uint64
	bits *big.Int
}

// IsKRL reports whether data starts like a KRL.
func IsKRL(data []byte) bool { return bytes.HasPrefix(data, []byte(Magic)) }

// Parse reads a binary KRL.
func Parse(data []byte) (*KRL, error) {
	if !IsKRL(data) {
		return nil, errors.New("not a KRL (bad magic)")
	}
	r := reader{b: data[len(Magic):]}
	k := &KRL{
		keys: map[string]bool{}, sha1s: map[string]bool{}, sha256: map[string]bool{},
		certs: map[string]*caRevocations{},
	}
	if v := r.u32(); r.err == nil && v != formatVersion {
		return nil, fmt.Errorf("unsupported KRL format version %d", v)
	}
	k.Version = r.u64()
	r.u64() // generated_date
	r.u64() // flags: none defined
	r.str() // reserved
	k.Comment = string(r.str())
	if r.err != nil {
		return nil, fmt.Errorf("KRL header: %w", r.err)
	}
	for n := 0; r.len() > 0; n++ {
		typ := r.u8()
		body := reader{b: r.str()}
		if r.err != nil {
			return nil, fmt.Errorf("KRL section %d: %w", n, r.err)
		}
		var err error
		switch typ {
		case sectionCertificates:
			err = k.parseCerts(&body)
		case sectionExplicitKey:
			err = parseBlobs(&body, k.keys, 0)
		case sectionSHA1:
			err = parseBlobs(&body, k.sha1s, sha1.Size)
		case sectionSHA256:
			err = parseBlobs(&body, k.sha256, sha256.Size)
		case sectionExtension:
			err = parseExtension(&body)
		case sectionSignature:
			err = errors.New("signed KRLs are not supported (OpenSSH refuses them too)")
		default:
			err = fmt.Errorf("unsupported section type %d", typ)
		}
		if err == nil && body.err == nil && body.len() > 0 {
			err = errors.New("trailing data")
		}
		if err == nil {
			err = body.err
		}
		if err != nil {
			return nil, fmt.Errorf("KRL section %d: %w", n, err)
		}
	}
	return k, nil
}

func parseBlobs(r *reader, into map[string]bool, size int) error {
	if r.len() == 0 {
		return errors.New("empty key section")
	}
	for r.len() > 0 && r.err == nil {
		b := r.str()
		if r.err != nil {
			break
		}
		if size > 0 && len(b) != size {
			return fmt.Errorf("hash of %d bytes, want %d", len(b), size)
		}
		if size == 0 {
			if _, err := gossh.ParsePublicKey(b); err != nil {
				return fmt.Errorf("revoked key: %w", err)
			}
		}
		into[string(b)] = true
	}
	return r.err
}

func parseExtension(r *reader) error {
	name := string(r.str())
	critical := r.bool()
	r.str() // contents
	if r.err != nil {
		return r.err
	}
	if critical {
		return fmt.Errorf("unsupported critical extension %q", name)
	}
	return nil
}

func (k *KRL) parseCerts(r *reader) error {
	ca := r.str()
	r.str() // reserved
	if r.err != nil {
		return r.err
	}
	if len(ca) > 0 {
		if _, err := gossh.ParsePublicKey(ca); err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
	}
	rev := k.certs[string(ca)]
	if rev == nil {
		rev = &caRevocations{ids: map[string]bool{}}
		k.certs[string(ca)] = rev
	}
	for r.len() > 0 {
		typ := r.u8()
		sub := reader{b: r.str()}
		if r.err != nil {
			return r.err
		}
		switch typ {
		case certSerialList:
			for sub.len() > 0 && sub.err == nil {
				s := sub.u64()
				rev.ranges = append(rev.ranges, serialRange{s, s})
			}
		case certSerialRange:
			lo, hi := sub.u64(), sub.u64()
			if sub.err == nil && lo > hi {
				return fmt.Errorf("serial range %d-%d is reversed", lo, hi)
			}
			rev.ranges = append(rev.ranges, serialRange{lo, hi})
		case certSerialBitmap:
			off := sub.u64()
			bits := sub.mpint()
			if sub.err != nil {
				break
			}
			if bits.BitLen() > maxBitmapBits {
				return fmt.Errorf("serial bitmap of %d bits is too large", bits.BitLen())
			}
			if n := bits.BitLen(); n > 0 && off+uint64(n-1) < off {
				return errors.New("serial bitmap wraps around")
			}
			rev.bitmaps = append(rev.bitmaps, serialBitmap{off, bits})
		case certKeyID:
			if sub.len() == 0 {
				return errors.New("empty key ID section")
			}
			for sub.len() > 0 && sub.err == nil {
				rev.ids[string(sub.str())] = true
			}
		case certExtension:
			if err := parseExtension(&sub); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported certificate section type %#x", typ)
		}
		if sub.err != nil {
			return sub.err
		}
		if sub.len() > 0 {
			return errors.New("trailing data in certificate section")
		}
	}
	return nil
}

// IsRevoked reports whether key (a plain key or a certificate) is revoked,
// checking a certificate's CA key too.
func (k *KRL) IsRevoked(key gossh.PublicKey) bool {
	if k.keyRevoked(key) {
		return true
	}
	if cert, ok := key.(*gossh.Certificate); ok {
		return k.keyRevoked(cert.SignatureKey)
	}
	return false
}

// keyRevoked is OpenSSH's is_key_revoked: the plain key by blob and hashes,
// then (for a certificate) its key ID and serial under its CA.
func (k *KRL) keyRevoked(key gossh.PublicKey) bool {
	cert, isCert := key.(*gossh.Certificate)
	plain := key
	if isCert {
		plain = cert.Key
	}
	blob := plain.Marshal()
	h1, h256 := sha1.Sum(blob), sha256.Sum256(blob)
	if k.keys[string(blob)] || k.sha1s[string(h1[:])] || k.sha256[string(h256[:])] {
		return true
	}
	if !isCert {
		return false
	}
	for _, ca := range []string{string(cert.SignatureKey.Marshal()), ""} {
		rev := k.certs[ca]
		if rev == nil {
			continue
		}
		if rev.ids[cert.KeyId] {
			return true
		}
		// Serial 0 is what a CA gives when it gives none: never revoked by
		// serial (OpenSSH's rule).
		if cert.Serial == 0 {
			continue
		}
		for _, sr := range rev.ranges {
			if sr.lo <= cert.Serial && cert.Serial <= sr.hi {
				return true
			}
		}
		for _, bm := range rev.bitmaps {
			if cert.Serial >= bm.off && cert.Serial-bm.off < uint64(bm.bits.BitLen()) &&
				bm.bits.Bit(int(cert.Serial-bm.off)) == 1 {
				return true
			}
		}
	}
	return false
}

// reader decodes SSH wire types, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) len() int { return len(r.b) }

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errors.New("truncated")
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) bool() bool {
	v := r.u8()
	if r.err == nil && v > 1 {
		r.err = fmt.Errorf("bad boolean %d", v)
	}
	return v == 1
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) str() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.err = errors.New("truncated string")
		r.b = nil
		return nil
	}
	return r.take(int(n))
}

// mpint reads a non-negative SSH mpint (RFC 4251 §5).
func (r *reader) mpint() *big.Int {
	b := r.str()
	if r.err != nil {
		return new(big.Int)
	}
	if len(b) > 0 && b[0]&0x80 != 0 {
		r.err = errors.New("negative bitmap")
		return new(big.Int)
	}
	return new(big.Int).SetBytes(b)
}
