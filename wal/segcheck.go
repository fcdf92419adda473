package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/walstore/walstore/base/errkind"
)

// Reading a segment as PostgreSQL's xlogreader reads it
// (src/backend/access/transam/xlogreader.c, XLogReaderValidatePageHeader,
// XLogDecodeNextRecord, ValidXLogRecordHeader, ValidXLogRecord), so that
// what walstore stores under a segment's name is WAL recovery can replay
// to its end, and nothing stricter:
//
//   - every page has a header of one format (the first page's magic), info
//     bits PostgreSQL knows, the page address of its position, and a
//     timeline that never goes back and is no later than the file name's;
//     the first page has the long header with the system identifier, the
//     segment size and the block size;
//   - records follow each other from the first one that starts in the
//     file: a length of at least a record header, the previous record's
//     position in xl_prev, a CRC-32C that holds; a record that runs onto
//     the next page finds that page flagged as a continuation with the
//     bytes it still needs (or flagged as overwriting it, as recovery
//     does after a torn record);
//   - an XLOG_SWITCH record ends the file: PostgreSQL zeroes the rest and
//     never reads it, so nothing after it is checked;
//   - otherwise the records run to the end of the file. WAL that stops
//     before (a zero length, a zeroed page, a stale page of a recycled
//     file) is a segment PostgreSQL has not finished, and is refused,
//     naming where it stops.
//
// A .partial file (the last segment of a timeline a promotion left, or one
// being received) is checked up to where its WAL ends: the first page must
// be valid, and whatever follows the end (zeros, or a recycled file's old
// pages) is PostgreSQL's and is accepted.
//
// The check reads the bytes as they stream past (a SegmentChecker is an
// io.Writer), so the door checks a body while it verifies it: the page
// headers, one header per record and a CRC-32C, which the CPU computes
// in hardware.

const (
	shortPageHeaderSize           = 24 // MAXALIGN(SizeOfXLogShortPHD)
	recordHeaderSize              = 24 // SizeOfXLogRecord
	xlpFirstIsContrecord          = 0x0001
	xlpFirstIsOverwriteContrecord = 0x0008
	rmXLogID                      = 0    // RM_XLOG_ID
	xlogSwitch                    = 0x40 // XLOG_SWITCH
	xlrInfoMask                   = 0x0F // XLR_INFO_MASK
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SegmentSummary is what a checked segment says about its neighbours: the
// checks that need the previous or next file (verify's continuity across
// segment boundaries) compare these.
type SegmentSummary struct {
	Header PageHeader // the first page's long header
	// FirstOverwrites: the first page overwrites a torn record
	// (XLP_FIRST_IS_OVERWRITE_CONTRECORD): recovery wrote it after a crash.
	FirstOverwrites bool
	// FirstRemLen is how many bytes of a record that began in the
	// previous segment the first page says it continues (0: none).
	FirstRemLen uint32
	// FirstPrev is xl_prev of the first record that begins in this file:
	// the position of the last record that began before it (0: no record
	// begins here).
	FirstPrev LSN
	// LastStart is the position of the last record that begins in this
	// file, whole or running on into the next (0: none).
	LastStart LSN
	// Carry is how many bytes of the last record continue into the next
	// segment (0: the last record ends in this file).
	Carry uint32
	// Switched: the WAL in this file ends with an XLOG_SWITCH record.
	Switched bool
	// End is where the WAL read in this file ends: the file's end, or
	// for a .partial file or after a switch, the end of the last record.
	End LSN
}

// SegmentChecker checks a segment or .partial file as it is written to
// it; Close gives the verdict. A zero sysid takes the first page's.
type SegmentChecker struct {
	name    Name
	segSize int64
	sysid   uint64
	partial bool

	first  [LongPageHeaderSize]byte
	off    int64  // bytes of the file consumed into whole pages
	page   []byte // the page being filled
	fill   int
	blcksz int
	sum    SegmentSummary
	err    error
	ended  bool // nothing after this is read (a switch, or a .partial's end)

	lastTLI   uint32
	prevStart LSN // the last record read whole, or begun (0: none yet)

	// The record being read across pages.
	remaining uint32 // bytes of it still to come (0: none)
	foreign   bool   // it began before this file: only skipped
	recStart  LSN
	recLen    uint32
	hdr       [recordHeaderSize]byte
	hdrFill   int
	crc       uint32
}

// NewSegmentChecker returns a checker for the file called name of a
// cluster with segments of segSize bytes and the given system identifier.
func NewSegmentChecker(name Name, segSize int64, sysid uint64) *SegmentChecker {
	return &SegmentChecker{name: name, segSize: segSize, sysid: sysid, partial: name.Kind == Partial}
}

// CheckSegmentBytes checks a whole file held in memory.
func CheckSegmentBytes(name Name, b []byte, sysid uint64) (SegmentSummary, error) {
	c := NewSegmentChecker(name, int64(len(b)), sysid)
	c.Write(b)
	return c.Close()
}

// Write consumes the next bytes of the file. It never fails: the first
// problem is kept for Close (so that a checker can sit in a tee).
func (c *SegmentChecker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && c.err == nil {
		if c.page == nil {
			// The block size is in the first page's long header.
			k := copy(c.first[c.fill:], p)
			c.fill += k
			p = p[k:]
			if c.fill == LongPageHeaderSize {
				c.start()
			}
			continue
		}
		k := min(c.blcksz-c.fill, len(p))
		copy(c.page[c.fill:], p[:k])
		c.fill += k
		p = p[k:]
		if c.fill == c.blcksz {
			c.readPage(c.page)
			c.off += int64(c.blcksz)
			c.fill = 0
		}
	}
	return n, nil
}

// start reads the first page's long header, which says the block size.
func (c *SegmentChecker) start() {
	h, err := ParsePageHeader(c.first[:])
	if err != nil {
		c.err = fmt.Errorf("%s: first page: %w", c.name, err)
		return
	}
	if c.sysid != 0 && h.SystemID != c.sysid {
		c.err = fmt.Errorf("%w: %s is from database system %d, this archive's is %d", errkind.ErrInvalid, c.name, h.SystemID, c.sysid)
		return
	}
	if err := CheckSegment(c.name, c.segSize, h); err != nil {
		c.err = err
		return
	}
	c.sum.Header = h
	c.blcksz = int(h.BlockSize)
	if c.segSize%int64(c.blcksz) != 0 {
		c.err = fmt.Errorf("%w: %s: segment size %d is not a multiple of block size %d", errkind.ErrInvalid, c.name, c.segSize, c.blcksz)
		return
	}
	c.page = make([]byte, c.blcksz)
	copy(c.page, c.first[:])
}

// Close checks that the whole file was read and returns its summary.
func (c *SegmentChecker) Close() (SegmentSummary, error) {
	if c.err != nil {
		return c.sum, c.err
	}
	if got := c.off + int64(c.fill); got != c.segSize || c.fill != 0 {
		return c.sum, fmt.Errorf("%w: %s is %d bytes, its segments are %d", errkind.ErrInvalid, c.name, got, c.segSize)
	}
	if !c.ended {
		c.sum.End = c.name.StartLSN(c.segSize) + LSN(c.segSize)
		c.sum.Carry = c.remaining
	}
	return c.sum, nil
}

// stop ends the reading at position at: the end of a .partial file's WAL
// (no error), or a segment that is not whole (an error naming where).
func (c *SegmentChecker) stop(at LSN, why string, args ...any) {
	if c.ended || c.err != nil {
		return
	}
	if c.partial {
		c.ended, c.sum.End = true, at
		return
	}
	c.err = fmt.Errorf("%w: %s: WAL ends at %s, before the end of the file (%s): PostgreSQL has not finished this segment, or it is damaged", errkind.ErrInvalid, c.name, at, fmt.Sprintf(why, args...))
}

func (c *SegmentChecker) broken(at LSN, why string, args ...any) {
	if c.ended || c.err != nil {
		return
	}
	if c.partial && at > c.name.StartLSN(c.segSize)+LSN(c.blcksz) {
		c.ended, c.sum.End = true, at
		return
	}
	c.err = fmt.Errorf("%w: %s at %s: %s", errkind.ErrInvalid, c.name, at, fmt.Sprintf(why, args...))
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// readPage checks one whole page at c.off.
func (c *SegmentChecker) readPage(pg []byte) {
	if c.ended || c.err != nil {
		return
	}
	le := binary.LittleEndian
	lsn := c.name.StartLSN(c.segSize) + LSN(c.off)
	offset := c.off
	if offset > 0 && allZero(pg) {
		c.stop(lsn, "the page at offset %d is zeroed", offset)
		return
	}
	magic, info, tli := le.Uint16(pg[0:]), le.Uint16(pg[2:]), le.Uint32(pg[4:])
	pageaddr, remLen := LSN(le.Uint64(pg[8:])), le.Uint32(pg[16:])
	switch {
	case magic != c.sum.Header.Magic:
		c.broken(lsn, "invalid magic number %04X at offset %d", magic, offset)
		return
	case info&^xlpAllFlags != 0:
		c.broken(lsn, "invalid info bits %04X at offset %d", info, offset)
		return
	case offset > 0 && pageaddr != lsn:
		c.stop(lsn, "the page at offset %d says it is at %s: a stale page of a recycled file", offset, pageaddr)
		return
	case tli < c.lastTLI:
		c.broken(lsn, "out-of-sequence timeline %d (after %d) at offset %d", tli, c.lastTLI, offset)
		return
	case tli > c.name.TLI:
		c.broken(lsn, "page of timeline %d in a file of timeline %d", tli, c.name.TLI)
		return
	}
	c.lastTLI = tli
	pos := shortPageHeaderSize
	if info&xlpLongHeader != 0 {
		pos = LongPageHeaderSize
	}
	contrecord := info&xlpFirstIsContrecord != 0
	switch {
	case c.remaining > 0 && info&xlpFirstIsOverwriteContrecord != 0:
		// Recovery found this record torn and wrote over it: it is
		// abandoned, and reading restarts after this page's header.
		c.remaining, c.foreign = 0, false
	case c.remaining > 0:
		if !contrecord {
			c.broken(lsn, "there is no contrecord flag (a record from %s needs %d more bytes)", c.recStart, c.remaining)
			return
		}
		if remLen != c.remaining {
			c.broken(lsn, "invalid contrecord length %d (the record from %s needs %d more bytes)", remLen, c.recStart, c.remaining)
			return
		}
		pos = c.consume(pg, pos, lsn)
	case offset == 0:
		c.sum.FirstRemLen = 0
		c.sum.FirstOverwrites = info&xlpFirstIsOverwriteContrecord != 0
		if contrecord && info&xlpFirstIsOverwriteContrecord == 0 && remLen > 0 {
			// The end of a record that began in the previous segment.
			c.sum.FirstRemLen = remLen
			c.remaining, c.foreign, c.recStart = remLen, true, lsn
			pos = c.consume(pg, pos, lsn)
		}
	case contrecord:
		c.broken(lsn, "contrecord is requested, but no record continues onto this page")
		return
	}
	for c.remaining == 0 && pos < len(pg) && !c.ended && c.err == nil {
		at := lsn + LSN(pos)
		totLen := le.Uint32(pg[pos:])
		if totLen == 0 {
			c.stop(at, "a record of length 0")
			return
		}
		if totLen < recordHeaderSize {
			c.broken(at, "invalid record length %d", totLen)
			return
		}
		c.recStart, c.recLen, c.remaining, c.foreign, c.hdrFill = at, totLen, totLen, false, 0
		c.crc = 0
		c.sum.LastStart = at
		pos = c.consume(pg, pos, lsn)
	}
}

// consume reads the bytes of the current record that lie on this page from
// pos, finishing it if they are the last; it returns where the next record
// begins (MAXALIGNed) or the page's end.
func (c *SegmentChecker) consume(pg []byte, pos int, lsn LSN) int {
	n := min(int(c.remaining), len(pg)-pos)
	b := pg[pos : pos+n]
	if !c.foreign {
		if c.hdrFill < recordHeaderSize {
			k := copy(c.hdr[c.hdrFill:], b)
			c.hdrFill += k
			b = b[k:]
			if c.hdrFill == recordHeaderSize && !c.checkHeader() {
				return len(pg)
			}
		}
		c.crc = crc32.Update(c.crc, castagnoli, b)
	}
	c.remaining -= uint32(n)
	pos += n
	if c.remaining > 0 {
		return len(pg) // goes on onto the next page
	}
	if !c.foreign {
		c.finishRecord()
	}
	c.foreign = false
	return (pos + 7) &^ 7
}

// checkHeader checks a record header as soon as it is whole
// (ValidXLogRecordHeader): its link to the previous record.
func (c *SegmentChecker) checkHeader() bool {
	prev := LSN(binary.LittleEndian.Uint64(c.hdr[8:]))
	if c.prevStart == 0 {
		c.sum.FirstPrev = prev
	} else if prev != c.prevStart {
		c.broken(c.recStart, "record with incorrect prev-link %s (the record before is at %s)", prev, c.prevStart)
		return false
	}
	return true
}

// finishRecord checks a whole record's CRC-32C (ValidXLogRecord: the data
// after the header, then the header up to xl_crc) and notes a switch.
func (c *SegmentChecker) finishRecord() {
	crc := crc32.Update(c.crc, castagnoli, c.hdr[:20])
	if want := binary.LittleEndian.Uint32(c.hdr[20:]); crc != want {
		c.broken(c.recStart, "incorrect resource manager data checksum in the record of %d bytes", c.recLen)
		return
	}
	c.prevStart = c.recStart
	rmid, info := c.hdr[17], c.hdr[16]
	if rmid == rmXLogID && info&^xlrInfoMask == xlogSwitch {
		c.sum.Switched, c.ended = true, true
		c.sum.End = c.recStart + LSN(c.recLen)
	}
}
