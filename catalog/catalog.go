package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// File is one WAL file in the archive.
type File struct {
	Name wal.Name
	Info store.Info
}

// Inventory is what one archive holds.
type Inventory struct {
	Archive   string
	SegSize   int64               // 0 if the archive holds no segment yet
	Segments  map[uint32][]uint64 // timeline → segment numbers, ascending
	Files     []File              // every WAL file, in key order
	Histories Histories           // parsed .history files (timeline 1 included, empty)
	Backups   archive.Listing     // completed and incomplete backups
	// Encrypted: the archive's WAL is encrypted (from a segment's header).
	Encrypted bool
	// Retired are the timelines taken out of recovery's view.
	Retired map[uint32]archive.RetiredTimeline
	// Restored are the timelines brought back from retirement.
	Restored map[uint32]archive.RestoredTimeline
	// Quarantined are the WAL objects set aside (walstored quarantine).
	Quarantined []archive.Quarantined
	// LastVerify is the last verify's result (nil: none recorded, or not
	// readable here).
	LastVerify  *archive.VerifyResult
	byName      map[wal.Name]File // lookup
	historyErrs map[uint32]error  // unparseable history files
}

// Load lists the archive and reads its history files and backup records.
func Load(ctx context.Context, a *archive.Archive) (*Inventory, error) {
	inv := &Inventory{
		Archive:     a.Name,
		Segments:    map[uint32][]uint64{},
		Histories:   Histories{1: nil},
		byName:      map[wal.Name]File{},
		historyErrs: map[uint32]error{},
	}
	err := a.ListWAL(ctx, "", func(n wal.Name, info store.Info) error {
		f := File{Name: n, Info: info}
		inv.Files = append(inv.Files, f)
		inv.byName[n] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	if inv.Backups, err = a.ListBackups(ctx); err != nil {
		return nil, err
	}
	if inv.Retired, err = a.RetiredTimelines(ctx); err != nil {
		return nil, err
	}
	if inv.Restored, err = a.RestoredTimelines(ctx); err != nil {
		return nil, err
	}
	if inv.Quarantined, err = a.QuarantinedObjects(ctx); err != nil {
		return nil, err
	}
	// An encrypted archive's record needs its key: without it, the
	// state is what the names say.
	inv.LastVerify, _ = a.LastVerify(ctx)
	inv.SegSize, err = segmentSize(ctx, a, inv)
	if err != nil {
		return nil, err
	}
	for _, f := range inv.Files {
		switch f.Name.Kind {
		case wal.Segment:
			if inv.SegSize > 0 {
				inv.Segments[f.Name.TLI] = append(inv.Segments[f.Name.TLI], f.Name.SegNo(inv.SegSize))
			}
		case wal.History:
			h, err := readHistory(ctx, a, f.Name)
			if err != nil {
				inv.historyErrs[f.Name.TLI] = err
				continue
			}
			inv.Histories[f.Name.TLI] = h
		}
	}
	for _, s := range inv.Segments {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	}
	return inv, nil
}

// segmentSize is the archive's WAL segment size: from a backup record, or
// from the raw size of any stored segment (its envelope header says it).
func segmentSize(ctx context.Context, a *archive.Archive, inv *Inventory) (int64, error) {
	for i := len(inv.Files) - 1; i >= 0; i-- {
		f := inv.Files[i]
		if f.Name.Kind != wal.Segment {
			continue
		}
		hdr, err := archive.StatHeader(ctx, a.Store, f.Info.Key)
		if err != nil {
			return 0, fmt.Errorf("read the header of %s: %w", f.Name, err)
		}
		if !wal.ValidSegmentSize(hdr.RawSize) {
			return 0, fmt.Errorf("%w: %s holds %d bytes, not a segment size", errkind.ErrCorrupt, f.Name, hdr.RawSize)
		}
		inv.Encrypted = hdr.Encrypted()
		return hdr.RawSize, nil
	}
	for _, r := range inv.Backups.Complete {
		if wal.ValidSegmentSize(r.SegmentSize) {
			return r.SegmentSize, nil
		}
	}
	return 0, nil
}

func readHistory(ctx context.Context, a *archive.Archive, n wal.Name) ([]wal.HistoryEntry, error) {
	_, rc, err := a.OpenWAL(ctx, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, wal.MaxHistorySize+1))
	if err != nil {
		return nil, err
	}
	return wal.ParseHistory(n.TLI, b)
}

// Has reports whether the archive holds the WAL file n.
func (inv *Inventory) Has(n wal.Name) bool {
	_, ok := inv.byName[n]
	return ok
}

// File returns the WAL file n.
func (inv *Inventory) File(n wal.Name) (File, bool) {
	f, ok := inv.byName[n]
	return f, ok
}

// HistoryError returns the parse error of timeline tli's history file.
func (inv *Inventory) HistoryError(tli uint32) error { return inv.historyErrs[tli] }

// Timelines lists the timelines that have segments or a history file.
func (inv *Inventory) Timelines() []uint32 {
	seen := map[uint32]bool{}
	for t := range inv.Segments {
		seen[t] = true
	}
	for t := range inv.Histories {
		if t != 1 || len(inv.Segments[1]) > 0 {
			seen[t] = true
		}
	}
	var out []uint32
	for t := range seen {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Range is a run of consecutive segments on one timeline.
type Range struct {
	TLI         uint32
	First, Last wal.Name
	Count       int
}

// Ranges returns the runs of consecutive segments of timeline tli; the
// holes between two runs are gaps.
func (inv *Inventory) Ranges(tli uint32) []Range {
	segs := inv.Segments[tli]
	var out []Range
	for i := 0; i < len(segs); {
		j := i
		for j+1 < len(segs) && segs[j+1] == segs[j]+1 {
			j++
		}
		out = append(out, Range{
			TLI:   tli,
			First: wal.SegmentName(tli, segs[i], inv.SegSize),
			Last:  wal.SegmentName(tli, segs[j], inv.SegSize),
			Count: j - i + 1,
		})
		i = j + 1
	}
	return out
}

// GapError names the first segment missing on a recovery path.
type GapError struct {
	Backup  string
	Missing wal.Name
	Target  uint32
}

func (e *GapError) Error() string {
	return fmt.Sprintf("segment %s is missing: recovery from backup %s along timeline %d stops there", e.Missing, e.Backup, e.Target)
}

// ErrGap is what a *GapError wraps.
var ErrGap = errors.New("gap in the WAL")

// ErrAmbiguous: several branches of the archive's history qualify.
var ErrAmbiguous = errors.New("ambiguous timeline")

func (e *GapError) Unwrap() error { return ErrGap }

// Path is the result of checking one backup's recovery path.
type Path struct {
	Backup   string   `json:"backup"`
	Target   uint32   `json:"timeline"` // the timeline recovery follows
	From     wal.Name `json:"from"`
	To       wal.Name `json:"to"`
	Segments int      `json:"segments"`
}

// Continuity checks that recovery from the backup record r can replay
// every segment from its start to the newest archived segment of the
// timeline it follows (ChooseTimeline: dead branches left out), reading
// each position from the timeline PostgreSQL would.
func (inv *Inventory) Continuity(r archive.Record) (Path, error) {
	start, err := r.Start()
	if err != nil {
		return Path{}, err
	}
	if inv.SegSize == 0 {
		return Path{}, fmt.Errorf("%w: archive %s holds no segments", ErrGap, inv.Archive)
	}
	target, ambiguous, err := inv.ChooseTimeline(r)
	if err != nil {
		return Path{}, err
	}
	if len(ambiguous) > 0 {
		return Path{}, fmt.Errorf("%w: recovery from backup %s can follow timelines %v, which are separate branches; retire the dead one", ErrAmbiguous, r.ID, ambiguous)
	}
	from := uint64(start) / uint64(inv.SegSize)
	newest := from
	for _, s := range inv.lineageSegments(target) {
		newest = max(newest, s)
	}
	p := Path{Backup: r.ID, Target: target}
	p.From = wal.SegmentName(inv.Histories.TimelineFor(target, from, inv.SegSize), from, inv.SegSize)
	for s := from; s <= newest; s++ {
		n := wal.SegmentName(inv.Histories.TimelineFor(target, s, inv.SegSize), s, inv.SegSize)
		if !inv.Has(n) {
			return p, &GapError{Backup: r.ID, Missing: n, Target: target}
		}
		p.To = n
		p.Segments++
	}
	return p, nil
}

// lineageSegments returns the segment numbers archived on target's
// lineage, each on the timeline recovery would read it from.
func (inv *Inventory) lineageSegments(target uint32) []uint64 {
	var out []uint64
	for tli, segs := range inv.Segments {
		for _, s := range segs {
			if inv.Histories.TimelineFor(target, s, inv.SegSize) == tli {
				out = append(out, s)
			}
		}
	}
	return out
}

// Broken are the objects the last verify found broken that are still
// the copy it read (a WAL file quarantined, or stored again since, is
// not).
func (inv *Inventory) Broken() []archive.BrokenObject {
	if inv.LastVerify == nil {
		return nil
	}
	var out []archive.BrokenObject
	for _, b := range inv.LastVerify.Broken {
		k, err := archive.ParseKey(b.Key)
		if err == nil && k.Kind == archive.KindWAL {
			f, ok := inv.File(k.WAL)
			if !ok || !f.Info.ModTime.Equal(b.ModTime) {
				continue
			}
		}
		out = append(out, b)
	}
	return out
}
