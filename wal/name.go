package wal

import (
	"fmt"
	"strconv"

	"github.com/walstore/walstore/base/errkind"
)

// Kind is the kind of file PostgreSQL hands to archive_command.
type Kind uint8

const (
	// Segment is a complete WAL segment: TTTTTTTTLLLLLLLLSSSSSSSS.
	Segment Kind = iota + 1
	// Partial is the last, incomplete segment of a timeline, archived by a
	// promoted standby: <segment>.partial.
	Partial
	// History is a timeline history file: TTTTTTTT.history.
	History
	// Backup is a backup history file written by pg_backup_stop:
	// <segment>.OOOOOOOO.backup.
	Backup
)

func (k Kind) String() string {
	switch k {
	case Segment:
		return "segment"
	case Partial:
		return "partial segment"
	case History:
		return "timeline history file"
	case Backup:
		return "backup history file"
	}
	return "unknown"
}

// MinSegmentSize and MaxSegmentSize bound wal_segment_size (initdb --wal-segsize).
const (
	MinSegmentSize = 1 << 20
	MaxSegmentSize = 1 << 30
)

// ValidSegmentSize reports whether n is a segment size PostgreSQL can use:
// a power of two from 1 MiB to 1 GiB.
func ValidSegmentSize(n int64) bool {
	return n >= MinSegmentSize && n <= MaxSegmentSize && n&(n-1) == 0
}

// Name is a parsed WAL file name. Log and Seg are the two halves of the
// segment number as PostgreSQL prints them; their meaning as one number
// depends on the segment size (see SegNo).
type Name struct {
	Kind   Kind
	TLI    uint32
	Log    uint32
	Seg    uint32
	Offset uint32 // start offset inside the segment, for Backup only
}

// maxSegField is the largest Seg value any segment size allows (1 MiB
// segments: 4096 per log file).
const maxSegField = 0x100000000/MinSegmentSize - 1

// ParseName parses a WAL file base name. It accepts exactly what PostgreSQL
// produces (upper-case hex, fixed widths) and nothing else, so a name that
// parses is also safe to use as a path component.
func ParseName(s string) (Name, error) {
	switch {
	case len(s) == 24:
		return parseSegment(s, Segment)
	case len(s) == 24+len(".partial") && s[24:] == ".partial":
		return parseSegment(s[:24], Partial)
	case len(s) == 8+len(".history") && s[8:] == ".history":
		tli, err := hex8(s[:8])
		if err != nil || tli == 0 {
			return Name{}, badName(s)
		}
		return Name{Kind: History, TLI: tli}, nil
	case len(s) == 24+1+8+len(".backup") && s[24] == '.' && s[33:] == ".backup":
		n, err := parseSegment(s[:24], Backup)
		if err != nil {
			return Name{}, badName(s)
		}
		off, err := hex8(s[25:33])
		if err != nil {
			return Name{}, badName(s)
		}
		n.Offset = off
		return n, nil
	}
	return Name{}, badName(s)
}

func parseSegment(s string, kind Kind) (Name, error) {
	tli, err1 := hex8(s[0:8])
	log, err2 := hex8(s[8:16])
	seg, err3 := hex8(s[16:24])
	if err1 != nil || err2 != nil || err3 != nil || tli == 0 || seg > maxSegField {
		return Name{}, badName(s)
	}
	return Name{Kind: kind, TLI: tli, Log: log, Seg: seg}, nil
}

// hex8 parses exactly eight upper-case hex digits.
func hex8(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, strconv.ErrSyntax
	}
	var v uint32
	for i := 0; i < 8; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint32(c-'A'+10)
		default:
			return 0, strconv.ErrSyntax
		}
	}
	return v, nil
}

func badName(s string) error {
	return fmt.Errorf("%w: %q is not a WAL file name (want a segment like 000000010000000000000001, or a .partial, .history or .backup file)", errkind.ErrInvalid, errkind.Quote(s))
}

// String returns the name exactly as PostgreSQL spells it.
func (n Name) String() string {
	switch n.Kind {
	case Segment:
		return fmt.Sprintf("%08X%08X%08X", n.TLI, n.Log, n.Seg)
	case Partial:
		return fmt.Sprintf("%08X%08X%08X.partial", n.TLI, n.Log, n.Seg)
	case History:
		return fmt.Sprintf("%08X.history", n.TLI)
	case Backup:
		return fmt.Sprintf("%08X%08X%08X.%08X.backup", n.TLI, n.Log, n.Seg, n.Offset)
	}
	return "invalid"
}

// HasSegment reports whether the name refers to a position in the WAL
// (everything but history files).
func (n Name) HasSegment() bool { return n.Kind != History && n.Kind != 0 }

// SegmentsPerLog is how many segments of segSize make up one "log file"
// (the middle eight hex digits of a name).
func SegmentsPerLog(segSize int64) uint64 { return 0x100000000 / uint64(segSize) }

// SegNo is the segment number PostgreSQL uses internally (XLogFromFileName).
func (n Name) SegNo(segSize int64) uint64 {
	return uint64(n.Log)*SegmentsPerLog(segSize) + uint64(n.Seg)
}

// ValidFor reports whether the name's Seg field fits the segment size.
func (n Name) ValidFor(segSize int64) bool {
	return !n.HasSegment() || uint64(n.Seg) < SegmentsPerLog(segSize)
}

// SegmentName returns the segment on timeline tli with number segNo.
func SegmentName(tli uint32, segNo uint64, segSize int64) Name {
	per := SegmentsPerLog(segSize)
	return Name{Kind: Segment, TLI: tli, Log: uint32(segNo / per), Seg: uint32(segNo % per)}
}

// Next returns the segment after n on the same timeline.
func (n Name) Next(segSize int64) Name {
	return SegmentName(n.TLI, n.SegNo(segSize)+1, segSize)
}

// Prev returns the segment before n on the same timeline; ok is false for
// the very first segment.
func (n Name) Prev(segSize int64) (prev Name, ok bool) {
	s := n.SegNo(segSize)
	if s == 0 {
		return Name{}, false
	}
	return SegmentName(n.TLI, s-1, segSize), true
}

// StartLSN is the WAL position of the first byte of the segment.
func (n Name) StartLSN(segSize int64) LSN { return LSN(n.SegNo(segSize) * uint64(segSize)) }

// Compare orders names by timeline, then position, then kind (a segment
// before its .partial and .backup files), then backup offset. History
// files sort before every segment of their timeline.
func Compare(a, b Name) int {
	if c := cmp3(uint64(a.TLI), uint64(b.TLI)); c != 0 {
		return c
	}
	ha, hb := a.Kind == History, b.Kind == History
	if ha != hb {
		if ha {
			return -1
		}
		return 1
	}
	if c := cmp3(uint64(a.Log)<<32|uint64(a.Seg), uint64(b.Log)<<32|uint64(b.Seg)); c != 0 {
		return c
	}
	if c := cmp3(uint64(a.Kind), uint64(b.Kind)); c != 0 {
		return c
	}
	return cmp3(uint64(a.Offset), uint64(b.Offset))
}

func cmp3(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MarshalText writes the name as PostgreSQL spells it (JSON).
func (n Name) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText parses a name.
func (n *Name) UnmarshalText(b []byte) error {
	v, err := ParseName(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}
