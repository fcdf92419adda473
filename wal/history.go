package wal

import (
	"bytes"
	"fmt"

	"github.com/walstore/walstore/base/errkind"
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

// ParseHistory parses the history file of timeline tli with the rules of
// PostgreSQL's reader (readTimeLineHistory in
// src/backend/access/transam/timeline.c), so that every history file
// PostgreSQL writes, and only what it would read, is accepted:
//
//   - blank lines and lines whose first non-blank character is '#' are
//     skipped;
//   - a line is sscanf("%u\t%X/%X"): a decimal timeline, white space (a
//     tab, or none), and a hexadecimal position; the rest of the line (the
//     reason) is free text;
//   - timelines strictly increase, and all are below tli.
//
// Switch points may come in any order: a second point-in-time restore of
// one backup to a position before an existing fork writes a parent whose
// switch point lies below the one before it, and PostgreSQL accepts it
// (see EffectiveLineage for what such a history means).
//
// Two things PostgreSQL's reader would take are refused, because
// PostgreSQL never writes them and an archive cannot hold what they
// describe: an empty history (a timeline above 1 with no parent) and
// timeline 0.
func ParseHistory(tli uint32, b []byte) ([]HistoryEntry, error) {
	if len(b) > MaxHistorySize {
		return nil, fmt.Errorf("%w: history file of timeline %d is %d bytes", errkind.ErrInvalid, tli, len(b))
	}
	var out []HistoryEntry
	for line, rest := 1, b; len(rest) > 0; line++ {
		var s []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			s, rest = rest[:i], rest[i+1:]
		} else {
			s, rest = rest, nil
		}
		t := bytes.TrimLeft(s, " \t\r\v\f")
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		e, err := parseHistoryLine(t)
		if err != nil {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: %s", errkind.ErrInvalid, tli, line, err)
		}
		if e.TLI == 0 {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: timeline 0 does not exist", errkind.ErrInvalid, tli, line)
		}
		if n := len(out); n > 0 && e.TLI <= out[n-1].TLI {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: timeline %d after timeline %d (PostgreSQL requires increasing timelines)", errkind.ErrInvalid, tli, line, e.TLI, out[n-1].TLI)
		}
		if e.TLI >= tli {
			return nil, fmt.Errorf("%w: history of timeline %d, line %d: parent timeline %d is not below %d", errkind.ErrInvalid, tli, line, e.TLI, tli)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: history file of timeline %d has no entries", errkind.ErrInvalid, tli)
	}
	return out, nil
}

// parseHistoryLine reads one line, without leading blanks, the way
// PostgreSQL's sscanf(line, "%u\t%X/%X") does: digits, any white space,
// hexadecimal digits (an optional 0x), '/', hexadecimal digits. What
// follows is the reason.
func parseHistoryLine(s []byte) (HistoryEntry, error) {
	var e HistoryEntry
	tli, s, ok := scanUint(s, 10, 32)
	if !ok {
		return e, fmt.Errorf("want a numeric timeline, got %q", errkind.Quote(string(clip(s))))
	}
	s = bytes.TrimLeft(s, " \t\r\v\f")
	hi, s, ok1 := scanUint(skip0x(s), 16, 32)
	if ok1 && len(s) > 0 && s[0] == '/' {
		var lo uint64
		if lo, s, ok = scanUint(skip0x(bytes.TrimLeft(s[1:], " \t\r\v\f")), 16, 32); ok {
			e.TLI, e.SwitchPoint = uint32(tli), LSN(hi<<32|lo)
			e.Reason = string(bytes.TrimSpace(s))
			return e, nil
		}
	}
	return e, fmt.Errorf("timeline %d has no switch point \"X/X\"", tli)
}

// scanUint reads an unsigned number in base from the start of s, within
// bits; it returns the rest.
func scanUint(s []byte, base uint64, bits uint) (uint64, []byte, bool) {
	var v uint64
	i := 0
	for ; i < len(s); i++ {
		d, ok := digit(s[i], base)
		if !ok {
			break
		}
		v = v*base + d
		if v>>bits != 0 {
			return 0, s, false
		}
	}
	return v, s[i:], i > 0
}

func digit(c byte, base uint64) (uint64, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0'), true
	case base == 16 && c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10, true
	case base == 16 && c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}

func skip0x(s []byte) []byte {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		if _, ok := digit(s[2], 16); ok {
			return s[2:]
		}
	}
	return s
}

func clip(s []byte) []byte {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// FormatHistory writes entries as PostgreSQL's writeTimeLineHistory does.
func FormatHistory(entries []HistoryEntry) []byte {
	var b bytes.Buffer
	for i, e := range entries {
		if i > 0 {
			b.WriteByte('\n') // PostgreSQL's extra newline before each appended line
		}
		fmt.Fprintf(&b, "%d\t%s\t%s\n", e.TLI, e.SwitchPoint, e.Reason)
	}
	return b.Bytes()
}

// Span is a part of a timeline's lineage: timeline TLI holds the WAL from
// Begin up to End (End 0: no end, the tip).
type Span struct {
	TLI        uint32
	Begin, End LSN
}

// Contains reports whether lsn lies in the span.
func (s Span) Contains(lsn LSN) bool { return lsn >= s.Begin && (s.End == 0 || lsn < s.End) }

// EffectiveLineage returns, oldest first, which timeline holds which WAL
// for a server on timeline tli with the given history, as PostgreSQL's
// tliOfPointInHistory decides it: each entry covers from the previous
// entry's switch point to its own, the newest entry that contains a
// position wins, and an entry whose range is empty or wholly covered by
// newer ones holds nothing and is left out.
//
// For a history 1@0/C000000, 2@0/80045A0 of timeline 3 (a second restore
// to a point before timeline 2 forked), timeline 3 holds from 0/80045A0,
// timeline 1 below that, and timeline 2 nothing.
func EffectiveLineage(tli uint32, history []HistoryEntry) []Span {
	out := make([]Span, 0, len(history)+1)
	var begin LSN
	if n := len(history); n > 0 {
		begin = history[n-1].SwitchPoint
	}
	out = append(out, Span{TLI: tli, Begin: begin})
	floor := begin // everything from here up belongs to newer entries
	for i := len(history) - 1; i >= 0; i-- {
		var b LSN
		if i > 0 {
			b = history[i-1].SwitchPoint
		}
		if b < floor {
			out = append(out, Span{TLI: history[i].TLI, Begin: b, End: floor})
			floor = b
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// TimelineAt returns the timeline that holds WAL position lsn for a server
// on timeline tli with the given history (PostgreSQL's
// tliOfPointInHistory).
func TimelineAt(tli uint32, history []HistoryEntry, lsn LSN) uint32 {
	l := EffectiveLineage(tli, history)
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].Contains(lsn) {
			return l[i].TLI
		}
	}
	return tli
}
