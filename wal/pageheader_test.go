package wal_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/walstore/walstore/base/errkind"
	wal "github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

func header(mod func(b []byte)) []byte {
	b := make([]byte, wal.LongPageHeaderSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002)
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], 3<<24)
	le.PutUint64(b[24:], 7300000000000000001)
	le.PutUint32(b[32:], 16<<20)
	le.PutUint32(b[36:], 8192)
	if mod != nil {
		mod(b)
	}
	return b
}

func TestParsePageHeaderRefusesNonsense(t *testing.T) {
	le := binary.LittleEndian
	if _, err := wal.ParsePageHeader(header(nil)); err != nil {
		t.Fatalf("valid header refused: %v", err)
	}
	for name, b := range map[string][]byte{
		"zeros":         make([]byte, 40),
		"short":         header(nil)[:20],
		"magic":         header(func(b []byte) { le.PutUint16(b[0:], 0x1234) }),
		"short header":  header(func(b []byte) { le.PutUint16(b[2:], 0) }),
		"unknown flags": header(func(b []byte) { le.PutUint16(b[2:], 0x0102) }),
		"timeline 0":    header(func(b []byte) { le.PutUint32(b[4:], 0) }),
		"segsize 3 MiB": header(func(b []byte) { le.PutUint32(b[32:], 3<<20) }),
		"segsize 2 GiB": header(func(b []byte) { le.PutUint32(b[32:], 1<<31) }),
		"block 100":     header(func(b []byte) { le.PutUint32(b[36:], 100) }),
		"sysid 0":       header(func(b []byte) { le.PutUint64(b[24:], 0) }),
		"mid-segment":   header(func(b []byte) { le.PutUint64(b[8:], 3<<24+8192) }),
	} {
		if _, err := wal.ParsePageHeader(b); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	hdr, _ := wal.ParsePageHeader(header(nil))
	for name, seg := range map[string]string{
		"position":       "000000010000000000000004",
		"later timeline": "000000010000000000000003",
	} {
		n, _ := wal.ParseName(seg)
		err := wal.CheckSegment(n, 16<<20, hdr)
		if name == "later timeline" && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if name == "position" && err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The first segment of timeline 2 starts with pages of timeline 1.
	n2, _ := wal.ParseName("000000020000000000000003")
	if err := wal.CheckSegment(n2, 16<<20, hdr); err != nil {
		t.Errorf("timeline switch segment refused: %v", err)
	}
	hdr3, _ := wal.ParsePageHeader(header(func(b []byte) { le.PutUint32(b[4:], 3) }))
	if err := wal.CheckSegment(n2, 16<<20, hdr3); err == nil {
		t.Error("a segment holding a later timeline than its name was accepted")
	}
}

// A synthetic segment passes the same checks as a real one (the real ones
// are checked in tests/pageheader_test.go).
func TestSyntheticSegmentPassesChecks(t *testing.T) {
	for _, segSize := range []int64{1 << 20, 16 << 20} {
		n := waltest.Name("000000020000000300000004")
		b := waltest.Segment(waltest.SystemID, n, segSize)
		hdr, err := wal.ParsePageHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := wal.CheckSegment(n, int64(len(b)), hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.SystemID != waltest.SystemID || hdr.PGVersion() != 15 {
			t.Fatalf("header %+v", hdr)
		}
		if err := wal.CheckSegment(n.Next(segSize), int64(len(b)), hdr); !errors.Is(err, errkind.ErrInvalid) {
			t.Fatalf("accepted under the next name: %v", err)
		}
	}
}
