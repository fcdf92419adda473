package wal

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/walstore/walstore/base/errkind"
)

// LSN is a PostgreSQL WAL position (XLogRecPtr).
type LSN uint64

// ParseLSN parses the "16/B374D848" form PostgreSQL prints.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%w: %q is not an LSN (want the form 16/B374D848)", errkind.ErrInvalid, errkind.Quote(s))
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: %q is not an LSN (want the form 16/B374D848)", errkind.ErrInvalid, errkind.Quote(s))
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// Segment returns the name of the segment on timeline tli that holds l.
func (l LSN) Segment(tli uint32, segSize int64) Name {
	return SegmentName(tli, uint64(l)/uint64(segSize), segSize)
}

// MarshalText writes the position as PostgreSQL prints it (JSON).
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses a position.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
