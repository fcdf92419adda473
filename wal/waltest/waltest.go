// Package waltest makes synthetic WAL for unit tests: segments whose long
// page header is what PostgreSQL 15 writes (magic, flags, timeline, page
// address, system identifier, segment and block size), followed by bytes
// that compress like real WAL. They pass every check walpush, walstored and
// walfetch make, so store, repository and client tests need no PostgreSQL.
// Whether real segments pass is proven by the end-to-end tests.
package waltest

import (
	"encoding/binary"
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

// Segment returns the bytes of segment n (segSize bytes): its header, then
// content that is half random and half repetitive, seeded by the name so
// that the same call returns the same bytes.
func Segment(sysid uint64, n wal.Name, segSize int64) []byte {
	b := make([]byte, segSize)
	copy(b, Header(sysid, n, segSize))
	r := rand.New(rand.NewPCG(uint64(n.TLI)<<32|uint64(n.Log), uint64(n.Seg)))
	for i := wal.LongPageHeaderSize; i < len(b); i += 8 {
		if (i/4096)%2 == 0 {
			binary.LittleEndian.PutUint64(b[i:], r.Uint64())
		} else {
			binary.LittleEndian.PutUint64(b[i:], uint64(i/8192))
		}
	}
	return b
}

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
