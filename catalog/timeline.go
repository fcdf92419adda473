// Package catalog reads what an archive holds, WAL per timeline, timeline
// histories and backups, and answers the questions list, verify and
// retention ask of it: which ranges of segments are there and where the
// gaps are, and whether recovery from a backup can reach the newest
// segment, following timeline switches the way PostgreSQL does.
//
// The timeline and continuity logic (this file) is pure: it works on
// names, numbers and parsed history files, and is tested with tables.
package catalog

import (
	"fmt"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// Histories maps a timeline to its parsed history file (timeline 1 has
// none: an empty entry).
type Histories map[uint32][]wal.HistoryEntry

// span is a timeline and the position it begins at.
type span struct {
	tli   uint32
	begin wal.LSN
}

// lineage returns target's timeline and its ancestors with where each
// began by its history file's lines, oldest first: the order in which
// PostgreSQL's XLogFileReadAnyTLI looks for a segment's file.
func (h Histories) lineage(target uint32) []span {
	hist := h[target]
	out := make([]span, 0, len(hist)+1)
	var begin wal.LSN
	for _, e := range hist {
		out = append(out, span{tli: e.TLI, begin: begin})
		begin = e.SwitchPoint
	}
	return append(out, span{tli: target, begin: begin})
}

// Effective returns which timeline holds which WAL along target's
// history, oldest first, as PostgreSQL decides it (wal.EffectiveLineage):
// an ancestor whose range a later switch point covers holds nothing.
func (h Histories) Effective(target uint32) []wal.Span {
	return wal.EffectiveLineage(target, h[target])
}

// TimelineFor returns the timeline whose file PostgreSQL reads for
// segment segNo when recovering along target: as XLogFileReadAnyTLI does,
// the newest timeline of the history whose first line's position lies at
// or before that segment (so the segment holding a switch point comes
// from the new timeline).
func (h Histories) TimelineFor(target uint32, segNo uint64, segSize int64) uint32 {
	l := h.lineage(target)
	for i := len(l) - 1; i >= 0; i-- {
		if uint64(l[i].begin)/uint64(segSize) <= segNo {
			return l[i].tli
		}
	}
	return l[0].tli
}

// OnLineage reports whether position lsn of timeline tli is part of
// target's history: PostgreSQL's tliOfPointInHistory gives tli for lsn
// (the check that refuses "requested timeline is not a child of this
// server's history").
func (h Histories) OnLineage(target, tli uint32, lsn wal.LSN) bool {
	return wal.TimelineAt(target, h[target], lsn) == tli
}

// Parent returns the timeline target effectively forked from and where:
// the ancestor that held the WAL just below target's first position.
// ok is false for a timeline without a history (timeline 1).
func (h Histories) Parent(target uint32) (parent uint32, at wal.LSN, ok bool) {
	l := h.Effective(target)
	if len(l) < 2 {
		return 0, 0, false
	}
	return l[len(l)-2].TLI, l[len(l)-1].Begin, true
}

// Check validates the histories against each other: every history lists
// timelines that exist as the prefix of its parent's.
func (h Histories) Check() error { return h.CheckWith(nil) }

// CheckWith is Check where a parent's history may also be a retired
// timeline's stand-in (archive.StandInHistory): a timeline made after the
// retirement names the retired number as its parent.
func (h Histories) CheckWith(standIns Histories) error {
	for tli, hist := range h {
		if len(hist) == 0 {
			continue
		}
		parent := hist[len(hist)-1].TLI
		ph, ok := h[parent]
		if !ok {
			ph, ok = standIns[parent]
		}
		if !ok && parent != 1 {
			return fmt.Errorf("%w: timeline %d's history names parent %d, whose history is missing", errkind.ErrInvalid, tli, parent)
		}
		if len(ph) != len(hist)-1 {
			return fmt.Errorf("%w: timeline %d's history does not extend its parent %d's", errkind.ErrInvalid, tli, parent)
		}
		for i, e := range ph {
			if hist[i].TLI != e.TLI || hist[i].SwitchPoint != e.SwitchPoint {
				return fmt.Errorf("%w: timeline %d's history disagrees with timeline %d's at line %d", errkind.ErrInvalid, tli, parent, i+1)
			}
		}
	}
	return nil
}

// Newest returns the newest timeline whose lineage contains position lsn
// of timeline tli: where recovery from there with
// recovery_target_timeline = 'latest' ends up.
func (h Histories) Newest(tli uint32, lsn wal.LSN) uint32 {
	best := tli
	for t := range h {
		if t > best && h.OnLineage(t, tli, lsn) {
			best = t
		}
	}
	return best
}
