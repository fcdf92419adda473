package wal

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/walstore/walstore/base/errkind"
)

// LongPageHeaderSize is the size of XLogLongPageHeaderData, the header of
// the first page of every WAL segment.
const LongPageHeaderSize = 40

const xlpLongHeader = 0x0002 // XLP_LONG_HEADER
const xlpAllFlags = 0x000F   // XLP_ALL_FLAGS (0x0007 before PostgreSQL 16, 0x000F since)

// pageMagics maps XLOG_PAGE_MAGIC to the PostgreSQL major version that
// writes it. A WAL format walstore has not been checked against is refused
// rather than guessed at.
var pageMagics = map[uint16]int{
	0xD101: 12,
	0xD106: 13,
	0xD10D: 14,
	0xD110: 15,
	0xD113: 16,
	0xD116: 17,
	0xD118: 18,
}

// PageHeader is the long page header at the start of a WAL segment.
type PageHeader struct {
	Magic       uint16
	Info        uint16
	TLI         uint32 // timeline of the first record on the page
	PageAddr    LSN    // WAL position of this page
	SystemID    uint64
	SegmentSize int64
	BlockSize   int64
}

// PGVersion is the PostgreSQL major version that wrote the header.
func (h PageHeader) PGVersion() int { return pageMagics[h.Magic] }

// ParsePageHeader decodes and sanity-checks the long page header in b
// (little-endian, as written by PostgreSQL on every platform it supports
// here).
func ParsePageHeader(b []byte) (PageHeader, error) {
	if len(b) < LongPageHeaderSize {
		return PageHeader{}, fmt.Errorf("%w: %d bytes is too short for a WAL page header", errkind.ErrInvalid, len(b))
	}
	le := binary.LittleEndian
	h := PageHeader{
		Magic:       le.Uint16(b[0:]),
		Info:        le.Uint16(b[2:]),
		TLI:         le.Uint32(b[4:]),
		PageAddr:    LSN(le.Uint64(b[8:])),
		SystemID:    le.Uint64(b[24:]),
		SegmentSize: int64(le.Uint32(b[32:])),
		BlockSize:   int64(le.Uint32(b[36:])),
	}
	if _, ok := pageMagics[h.Magic]; !ok {
		return h, fmt.Errorf("%w: WAL page magic 0x%04X is not one of PostgreSQL 12 to 18", errkind.ErrInvalid, h.Magic)
	}
	if h.Info&xlpLongHeader == 0 || h.Info&^xlpAllFlags != 0 {
		return h, fmt.Errorf("%w: WAL page info 0x%04X is not a segment's first page", errkind.ErrInvalid, h.Info)
	}
	if h.TLI == 0 {
		return h, fmt.Errorf("%w: WAL page header has timeline 0", errkind.ErrInvalid)
	}
	if !ValidSegmentSize(h.SegmentSize) {
		return h, fmt.Errorf("%w: WAL page header says segment size %d, not a power of two from 1 MiB to 1 GiB", errkind.ErrInvalid, h.SegmentSize)
	}
	if h.BlockSize < 1024 || h.BlockSize > 65536 || h.BlockSize&(h.BlockSize-1) != 0 {
		return h, fmt.Errorf("%w: WAL page header says block size %d", errkind.ErrInvalid, h.BlockSize)
	}
	if h.SystemID == 0 {
		return h, fmt.Errorf("%w: WAL page header has system identifier 0", errkind.ErrInvalid)
	}
	if uint64(h.PageAddr)%uint64(h.SegmentSize) != 0 {
		return h, fmt.Errorf("%w: first page address %s is not at a segment boundary", errkind.ErrInvalid, h.PageAddr)
	}
	return h, nil
}

// CheckSegment checks that a file of size bytes whose first page is hdr
// really is the segment or .partial file called name: same size as the
// header's segment size, page address at the named position, and a timeline
// no later than the name's (the first segment of a new timeline starts with
// pages copied from its parent, so an earlier timeline there is normal).
func CheckSegment(name Name, size int64, hdr PageHeader) error {
	if name.Kind != Segment && name.Kind != Partial {
		return fmt.Errorf("%w: %s is a %s, not a segment", errkind.ErrInvalid, name, name.Kind)
	}
	if size != hdr.SegmentSize {
		return fmt.Errorf("%w: %s is %d bytes but its header says segments are %d bytes", errkind.ErrInvalid, name, size, hdr.SegmentSize)
	}
	if !name.ValidFor(hdr.SegmentSize) {
		return fmt.Errorf("%w: %s: segment field %08X is too large for %d-byte segments", errkind.ErrInvalid, name, name.Seg, hdr.SegmentSize)
	}
	if want := name.StartLSN(hdr.SegmentSize); hdr.PageAddr != want {
		return fmt.Errorf("%w: %s starts at WAL position %s but its name says %s", errkind.ErrInvalid, name, hdr.PageAddr, want)
	}
	if hdr.TLI > name.TLI {
		return fmt.Errorf("%w: %s holds timeline %d, later than the name's timeline %d", errkind.ErrInvalid, name, hdr.TLI, name.TLI)
	}
	return nil
}

// ReadPageHeader reads and parses the long page header at the start of r.
func ReadPageHeader(r io.ReaderAt) (PageHeader, error) {
	var b [LongPageHeaderSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		if err == io.EOF {
			return PageHeader{}, fmt.Errorf("%w: file is shorter than a WAL page header", errkind.ErrInvalid)
		}
		return PageHeader{}, err
	}
	return ParsePageHeader(b[:])
}
