// Package waltest makes synthetic WAL for unit tests: segments whose long
// page header is what PostgreSQL 15 writes (magic, flags, timeline, page
// address, system identifier, segment and block size), followed by bytes
// that compress like real WAL. They pass every check walpush, walstored and
// walfetch make, so store, repository and client tests need no PostgreSQL.
// Whether real segments pass is proven by the end-to-end tests.
package waltest

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/walstore/walstore/wal"
)

// SystemID is the system identifier of the synthetic cluster.
const SystemID uint64 = 7300000000000000001

// PG15Magic is XLOG_PAGE_MAGIC of PostgreSQL 15.
const PG15Magic = 0xD110

// Header returns the 40-byte long page header of segment n for a cluster
// with the given system identifier and segment size.
func Header(sysid uint64, n wal.Name, segSize int64) []byte {
	b := make([]byte, wal.LongPageHeaderSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], PG15Magic)
	le.PutUint16(b[2:], 0x0002) // XLP_LONG_HEADER
	le.PutUint32(b[4:], n.TLI)
	le.PutUint64(b[8:], uint64(n.StartLSN(segSize)))
	le.PutUint64(b[24:], sysid)
	le.PutUint32(b[32:], uint32(segSize))
	le.PutUint32(b[36:], 8192)
	return b
}

// Segment returns the bytes of segment n (segSize bytes): WAL that
// PostgreSQL's reader would read to the end, records with valid links and
// CRC-32C crossing pages as PostgreSQL writes them, whose content is half
// random and half repetitive, seeded by the name so that the same call
// returns the same bytes. Every segment ends with a record that fills its
// last page, so the first record of the next one links back to it.
func Segment(sysid uint64, n wal.Name, segSize int64) []byte {
	return OtherSegment(sysid, n, segSize, 0)
}

// OtherSegment is Segment with other records (another seed): what a
// server on a split-off history writes under the same name.
func OtherSegment(sysid uint64, n wal.Name, segSize int64, seed uint64) []byte {
	r := rand.New(rand.NewPCG(uint64(n.TLI)<<32|uint64(n.Log)^seed<<16, uint64(n.Seg)))
	w := &walWriter{b: make([]byte, segSize), start: uint64(n.StartLSN(segSize)), tli: n.TLI}
	copy(w.b, Header(sysid, n, segSize))
	w.pos = wal.LongPageHeaderSize
	w.prev = w.start - BlockSize + shortHeader // the last record of the segment before
	lastPage := int(segSize) - BlockSize
	for i := 0; ; i++ {
		left := w.space(lastPage)
		l := 24 + 8*r.IntN(300)
		if i%7 == 0 {
			l += 8 * r.IntN(2000) // some records cross pages
		}
		if left-l < 64 {
			w.record(r, left, i)
			break
		}
		w.record(r, l, i)
	}
	w.record(r, BlockSize-shortHeader, 1) // fills the last page
	return w.b
}

// SwitchedSegment returns segment n as PostgreSQL leaves it after
// pg_switch_wal() or archive_timeout: records up to about offset at, an
// XLOG_SWITCH record, and zeros to the end.
func SwitchedSegment(sysid uint64, n wal.Name, segSize int64, at int) []byte {
	r := rand.New(rand.NewPCG(uint64(n.TLI)<<32|uint64(n.Log), uint64(n.Seg)))
	w := &walWriter{b: make([]byte, segSize), start: uint64(n.StartLSN(segSize)), tli: n.TLI}
	copy(w.b, Header(sysid, n, segSize))
	w.pos = wal.LongPageHeaderSize
	w.prev = w.start - BlockSize + shortHeader
	for i := 0; w.pos < at; i++ {
		w.record(r, 24+8*r.IntN(300), i)
	}
	w.switchRecord()
	return w.b
}

// switchRecord writes an XLOG_SWITCH record; the rest stays zero.
func (w *walWriter) switchRecord() {
	rec := make([]byte, 24)
	le := binary.LittleEndian
	le.PutUint32(rec[0:], 24)
	le.PutUint64(rec[8:], w.prev)
	rec[16], rec[17] = 0x40, 0 // XLOG_SWITCH of RM_XLOG_ID
	le.PutUint32(rec[20:], crc32.Update(0, castagnoli, rec[:20]))
	if w.pos%BlockSize == 0 {
		w.pageHeader(0)
	}
	copy(w.b[w.pos:], rec)
	w.pos += 24
}

// BlockSize is the WAL block size of synthetic segments (XLOG_BLCKSZ).
const BlockSize = 8192

const shortHeader = 24

// walWriter lays records into a segment, writing a page header at each
// page boundary (flagged as a continuation, with the bytes still to come,
// when a record goes on).
type walWriter struct {
	b     []byte
	start uint64
	tli   uint32
	pos   int
	prev  uint64
}

// space is how many bytes of records fit from pos up to end (a page
// boundary), page headers left out.
func (w *walWriter) space(end int) int {
	n := end - w.pos
	for p := (w.pos/BlockSize + 1) * BlockSize; p < end; p += BlockSize {
		n -= shortHeader
	}
	return n
}

func (w *walWriter) record(r *rand.Rand, l, i int) {
	rec := make([]byte, l)
	le := binary.LittleEndian
	le.PutUint32(rec[0:], uint32(l))
	le.PutUint32(rec[4:], uint32(1000+i))
	le.PutUint64(rec[8:], w.prev)
	rec[16], rec[17] = 0, 10 // heap
	for j := 24; j+8 <= l; j += 8 {
		if i%2 == 0 {
			le.PutUint64(rec[j:], r.Uint64())
		} else {
			le.PutUint64(rec[j:], uint64(j/64))
		}
	}
	crc := crc32.Update(0, castagnoli, rec[24:])
	crc = crc32.Update(crc, castagnoli, rec[:20])
	le.PutUint32(rec[20:], crc)
	w.prev = w.start + uint64(w.pos)
	if w.pos%BlockSize == 0 {
		w.pageHeader(0)
		w.prev = w.start + uint64(w.pos)
	}
	for len(rec) > 0 {
		if w.pos%BlockSize == 0 {
			w.pageHeader(len(rec))
		}
		k := copy(w.b[w.pos:w.pos+min(len(rec), BlockSize-w.pos%BlockSize)], rec)
		rec = rec[k:]
		w.pos += k
	}
	w.pos = (w.pos + 7) &^ 7
}

func (w *walWriter) pageHeader(rem int) {
	le := binary.LittleEndian
	h := w.b[w.pos:]
	le.PutUint16(h[0:], PG15Magic)
	if rem > 0 {
		le.PutUint16(h[2:], 0x0001) // XLP_FIRST_IS_CONTRECORD
	}
	le.PutUint32(h[4:], w.tli)
	le.PutUint64(h[8:], w.start+uint64(w.pos))
	le.PutUint32(h[16:], uint32(rem))
	w.pos += shortHeader
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Name parses a WAL file name and panics on a mistake in the test.
func Name(s string) wal.Name {
	n, err := wal.ParseName(s)
	if err != nil {
		panic(err)
	}
	return n
}

// History returns a timeline history file whose lines are the given
// (parent timeline, switch point) pairs, as PostgreSQL writes them.
func History(entries ...wal.HistoryEntry) []byte {
	var out []byte
	for _, e := range entries {
		out = append(out, []byte(formatHistoryLine(e))...)
	}
	return out
}

func formatHistoryLine(e wal.HistoryEntry) string {
	reason := e.Reason
	if reason == "" {
		reason = "no recovery target specified"
	}
	return itoa(e.TLI) + "\t" + e.SwitchPoint.String() + "\t" + reason + "\n"
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b [10]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// WriteSegments writes count synthetic segments of segSize bytes, the
// first one named first, into dir (created if needed) and returns their
// paths, in order.
func WriteSegments(dir string, first wal.Name, count int, segSize int64) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	n := first
	for range count {
		p := filepath.Join(dir, n.String())
		if err := os.WriteFile(p, Segment(SystemID, n, segSize), 0o644); err != nil {
			return nil, err
		}
		out = append(out, p)
		n = n.Next(segSize)
	}
	return out, nil
}
