package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/walstore/walstore/internal/errkind"
)

// MaxHistorySize bounds a .history file: one line per ancestor timeline.
const MaxHistorySize = 1 << 20

// HistoryEntry is one line of a timeline history file: timeline TLI ended
// (and its child began) at SwitchPoint.
type HistoryEntry struct {
	TLI         uint32
	SwitchPoint LSN
	Reason      string
}

// ParseHistory parses the history file of timeline tli. Entries must name
// strictly increasing timelines below tli, at non-decreasing positions.
func ParseHistory(tli uint32, b []byte) ([]HistoryEntry, error) {
	if len(b) > MaxHistorySize {
		return nil, fmt.Errorf("%w: history file of timeline %d is %d bytes", ErrInvalid, tli, len(b))
	}
	var out []HistoryEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.SplitN(s, "\t", 3)
		if len(f) < 2 {
			f = strings.Fields(s)
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: want \"tli<TAB>lsn<TAB>reason\"", ErrInvalid, tli, line)
		}
		parent, err := strconv.ParseUint(strings.TrimSpace(f[0]), 10, 32)
		if err != nil || parent == 0 || uint32(parent) >= tli {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: bad parent timeline %q", ErrInvalid, tli, line, errkind.Quote(f[0]))
		}
		lsn, err := ParseLSN(strings.TrimSpace(f[1]))
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d, line %d: %w", tli, line, err)
		}
		e := HistoryEntry{TLI: uint32(parent), SwitchPoint: lsn}
		if len(f) == 3 {
			e.Reason = strings.TrimSpace(f[2])
		}
		if n := len(out); n > 0 && (out[n-1].TLI >= e.TLI || out[n-1].SwitchPoint > e.SwitchPoint) {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: timelines out of order", ErrInvalid, tli, line)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: history file of timeline %d has no entries", ErrInvalid, tli)
	}
	return out, sc.Err()
}

// TimelineAt returns the timeline that was current at WAL position lsn for
// a server on timeline tli with the given history: the first ancestor
// whose switch point lies after lsn, else tli itself.
func TimelineAt(tli uint32, history []HistoryEntry, lsn LSN) uint32 {
	for _, e := range history {
		if lsn < e.SwitchPoint {
			return e.TLI
		}
	}
	return tli
}
