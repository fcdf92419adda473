package wal_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

const segSize = 16 << 20

func TestSegmentCheckerAcceptsWholeSegments(t *testing.T) {
	n := waltest.Name("000000010000000000000005")
	a := waltest.Segment(waltest.SystemID, n, segSize)
	sum, err := wal.CheckSegmentBytes(n, a, waltest.SystemID)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Switched || sum.Carry != 0 || sum.End != n.StartLSN(segSize)+segSize || sum.LastStart == 0 {
		t.Fatalf("summary %+v", sum)
	}
	// Written in odd pieces, as a stream arrives.
	c := wal.NewSegmentChecker(n, segSize, 0)
	for b := a; len(b) > 0; {
		k := min(len(b), 7919)
		c.Write(b[:k])
		b = b[k:]
	}
	if s2, err := c.Close(); err != nil || s2 != sum {
		t.Fatalf("streamed: %+v %v", s2, err)
	}
	// The next segment links back to this one's last record.
	next := n.Next(segSize)
	s3, err := wal.CheckSegmentBytes(next, waltest.Segment(waltest.SystemID, next, segSize), waltest.SystemID)
	if err != nil || s3.FirstPrev != sum.LastStart || s3.FirstRemLen != 0 {
		t.Fatalf("next: %+v %v (last record before at %s)", s3, err, sum.LastStart)
	}
	// After an XLOG_SWITCH the rest is zeros, and not read.
	sw := waltest.SwitchedSegment(waltest.SystemID, n, segSize, 100000)
	if s, err := wal.CheckSegmentBytes(n, sw, 0); err != nil || !s.Switched || s.End > n.StartLSN(segSize)+120000 {
		t.Fatalf("switched: %+v %v", s, err)
	}
}

func TestSegmentCheckerRefusesWhatRecoveryCannotReplay(t *testing.T) {
	n := waltest.Name("000000020000000000000005")
	good := waltest.Segment(waltest.SystemID, n, segSize)
	other := waltest.Segment(waltest.SystemID, waltest.Name("000000020000000000000003"), segSize)
	for _, tc := range []struct {
		name string
		b    func() []byte
		want string
	}{
		{"unfinished, zero tail", func() []byte {
			b := bytes.Clone(good)
			clear(b[1<<20:])
			return b
		}, "WAL ends at"},
		{"recycled, stale tail", func() []byte {
			b := bytes.Clone(good)
			copy(b[3<<20:], other[3<<20:])
			return b
		}, "stale page of a recycled file"},
		{"a bit flipped", func() []byte {
			b := bytes.Clone(good)
			b[5<<20+1000] ^= 4
			return b
		}, "checksum"},
		{"junk", func() []byte {
			b := bytes.Clone(good)
			for i := 8192; i < len(b); i++ {
				b[i] = byte(i * 7)
			}
			return b
		}, ""},
		{"another system", func() []byte { return waltest.Segment(42, n, segSize) }, "database system"},
		{"page of a later timeline", func() []byte {
			b := bytes.Clone(good)
			b[4<<20+4] = 3
			return b
		}, "timeline 3"},
		{"too short", func() []byte { return good[:8<<20] }, "bytes"},
		{"a switch in the middle, then junk in a segment", func() []byte {
			b := waltest.SwitchedSegment(waltest.SystemID, n, segSize, 100000)
			copy(b[1<<20:], other[1<<20:2<<20])
			return b
		}, "-"},
	} {
		b := tc.b()
		_, err := wal.CheckSegmentBytes(n, b, waltest.SystemID)
		if tc.want == "-" {
			if err != nil {
				t.Errorf("%s: %v: what follows a switch is not read", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want errkind.ErrInvalid with %q", tc.name, err, tc.want)
		}
	}
}

func TestPartialFilesAreCheckedUpToTheirEnd(t *testing.T) {
	seg := waltest.Name("000000010000000000000007")
	p := waltest.Name("000000010000000000000007.partial")
	b := waltest.Segment(waltest.SystemID, seg, segSize)
	clear(b[2<<20+4096:])
	s, err := wal.CheckSegmentBytes(p, b, waltest.SystemID)
	if err != nil || s.End <= seg.StartLSN(segSize) || s.End > seg.StartLSN(segSize)+2<<20+4096 {
		t.Fatalf("zero tail: %+v %v", s, err)
	}
	stale := waltest.Segment(waltest.SystemID, waltest.Name("000000010000000000000002"), segSize)
	b2 := waltest.Segment(waltest.SystemID, seg, segSize)
	copy(b2[1<<20:], stale[1<<20:])
	if _, err := wal.CheckSegmentBytes(p, b2, waltest.SystemID); err != nil {
		t.Fatalf("a recycled file's old pages after the end: %v", err)
	}
	// The first page must still be this file's.
	if _, err := wal.CheckSegmentBytes(p, stale, waltest.SystemID); err == nil {
		t.Fatal("a .partial whose first page is another segment's was accepted")
	}
}

// BenchmarkSegmentChecker is what the door's WAL check costs per 16 MiB
// segment (README: "What the door checks").
func BenchmarkSegmentChecker(b *testing.B) {
	n := waltest.Name("000000010000000000000005")
	seg := waltest.Segment(waltest.SystemID, n, segSize)
	b.SetBytes(segSize)
	for b.Loop() {
		if _, err := wal.CheckSegmentBytes(n, seg, waltest.SystemID); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzSegmentChecker: the door reads hostile bodies with it, so no input
// may make it panic, and it never calls whole what it refused a part of.
// A small segment size keeps runs fast: a synthetic 1 MiB segment, with
// the fuzzer's bytes written over it at the fuzzer's offset.
func FuzzSegmentChecker(f *testing.F) {
	f.Add(uint32(0), []byte{0})
	f.Add(uint32(8192), []byte{0x10, 0xD1, 0, 0, 1, 0, 0, 0})
	f.Add(uint32(40), []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint32(1<<20-8), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	n := waltest.Name("000000010000000000000003")
	base := waltest.Segment(waltest.SystemID, n, 1<<20)
	f.Fuzz(func(t *testing.T, off uint32, patch []byte) {
		b := append([]byte(nil), base...)
		copy(b[int(off)%len(b):], patch)
		for _, name := range []wal.Name{n, waltest.Name("000000010000000000000003.partial")} {
			sum, err := wal.CheckSegmentBytes(name, b, 0)
			if err == nil && name.Kind == wal.Segment && !sum.Switched && sum.End != name.StartLSN(1<<20)+1<<20 {
				t.Fatalf("a whole segment whose WAL ends at %s", sum.End)
			}
		}
	})
}
