package wal

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzParseName: any string is refused with ErrInvalid or parses into a
// name that prints back as the same string and is a safe path component.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "00000002.history", "000000010000000000000002.partial",
		"000000010000000000000002.00000028.backup", "../000000010000000000000001", "\x00", "0000000100000000000000.history",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", s, err)
			}
			return
		}
		if n.String() != s {
			t.Fatalf("%q parsed to %+v, which prints as %q", s, n, n.String())
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c == '.' || c >= 'a' && c <= 'z') || s[0] == '.' {
				t.Fatalf("%q parsed but is not a safe path component", s)
			}
		}
	})
}

// FuzzParsePageHeader: any 40 bytes are refused or yield a header whose
// sizes and position are sane; CheckSegment never panics.
func FuzzParsePageHeader(f *testing.F) {
	good := make([]byte, LongPageHeaderSize)
	le := binary.LittleEndian
	le.PutUint16(good[0:], 0xD110)
	le.PutUint16(good[2:], 2)
	le.PutUint32(good[4:], 1)
	le.PutUint64(good[8:], 1<<24)
	le.PutUint64(good[24:], 7300000000000000001)
	le.PutUint32(good[32:], 16<<20)
	le.PutUint32(good[36:], 8192)
	f.Add(good)
	f.Add(make([]byte, 40))
	f.Add([]byte{0x10, 0xD1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParsePageHeader(b)
		if err != nil {
			return
		}
		if !ValidSegmentSize(h.SegmentSize) || h.SystemID == 0 || h.TLI == 0 || uint64(h.PageAddr)%uint64(h.SegmentSize) != 0 {
			t.Fatalf("insane header accepted: %+v", h)
		}
		n := h.PageAddr.Segment(h.TLI, h.SegmentSize)
		if err := CheckSegment(n, h.SegmentSize, h); err != nil {
			t.Fatalf("header %+v refused under its own name %s: %v", h, n, err)
		}
	})
}
