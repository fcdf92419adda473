package wal

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/walstore/walstore/base/errkind"
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
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Fatalf("%q: error %v is not errkind.ErrInvalid", s, err)
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

// FuzzParseHistory holds ParseHistory to PostgreSQL's reader
// (readTimeLineHistory): whatever it accepts has strictly increasing
// timelines below the file's own, reads back the same when written as
// PostgreSQL writes it, and a history PostgreSQL could write from the
// same timelines and switch points (in any order) is accepted.
func FuzzParseHistory(f *testing.F) {
	f.Add(uint32(3), []byte("1\t0/C000000\tno recovery target specified\n\n2\t0/80045A0\tbefore 2026-12-07\n"))
	f.Add(uint32(2), []byte("1\t0/3000000\tx\n"))
	f.Add(uint32(5), []byte("# c\n 1 1/0 a\n3\t0/5\n4\t0X1/0xA\tb"))
	f.Add(uint32(2), []byte("1\t0/3000000"))
	f.Fuzz(func(t *testing.T, tli uint32, b []byte) {
		h, err := ParseHistory(tli, b)
		if err != nil {
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Fatalf("error %v is not errkind.ErrInvalid", err)
			}
			return
		}
		for i, e := range h {
			if e.TLI == 0 || e.TLI >= tli || i > 0 && e.TLI <= h[i-1].TLI {
				t.Fatalf("accepted timelines out of PostgreSQL's rules: %+v (file of %d)", h, tli)
			}
		}
		again, err := ParseHistory(tli, FormatHistory(h))
		if err != nil || len(again) != len(h) {
			t.Fatalf("written back and read again: %v %+v", err, again)
		}
		for i := range h {
			if again[i].TLI != h[i].TLI || again[i].SwitchPoint != h[i].SwitchPoint {
				t.Fatalf("line %d read back as %+v, was %+v", i+1, again[i], h[i])
			}
		}
		// The lineage covers every position once, with the tip last.
		l := EffectiveLineage(tli, h)
		if l[len(l)-1].TLI != tli || l[0].Begin != 0 {
			t.Fatalf("lineage %+v", l)
		}
		for i := 1; i < len(l); i++ {
			if l[i-1].End != l[i].Begin || l[i-1].Begin >= l[i-1].End {
				t.Fatalf("lineage not contiguous: %+v", l)
			}
		}
	})
}
