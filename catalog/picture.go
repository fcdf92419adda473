package catalog

import (
	"sort"
	"time"

	"github.com/walstore/walstore/wal"
)

// Picture is an archive as the status page draws it, on a time axis:
// backups as bars from start to stop, the WAL of each timeline as runs
// of segments from the time the first was stored to the time the last
// was, with the gaps between runs and the forks between timelines, and
// the WAL stored per hour. It is computed from an Inventory alone.
type Picture struct {
	Backups    []PictureBackup   `json:"backups"`
	Timelines  []PictureTimeline `json:"timelines"`
	Forks      []PictureFork     `json:"forks"`
	WALPerHour []HourBytes       `json:"wal_per_hour"` // the last 48 hours, oldest first
	// The time axis: from the oldest backup or WAL run drawn to the
	// newest (or now, if nothing is drawn). History files and labels that
	// outlive retention do not stretch it: a fork older than the axis is
	// drawn at its left edge.
	From NullTime `json:"from"`
	To   NullTime `json:"to"`
}

// PictureBackup is one completed backup.
type PictureBackup struct {
	ID         string    `json:"id"`
	Start      time.Time `json:"start_time"`
	Stop       time.Time `json:"stop_time"`
	Timeline   uint32    `json:"timeline"`
	RawSize    int64     `json:"raw_size"`
	StoredSize int64     `json:"stored_size"`
}

// PictureTimeline is one timeline's WAL.
type PictureTimeline struct {
	Timeline    uint32  `json:"timeline"`
	Parent      uint32  `json:"parent"` // 0 for timeline 1
	SwitchPoint wal.LSN `json:"switch_point"`
	// Began is when the timeline's history file was stored: the
	// promotion (or end of recovery) that made it. Zero for timeline 1.
	Began    time.Time    `json:"began,omitzero"`
	Dead     bool         `json:"dead"` // recovery does not follow it
	Runs     []PictureRun `json:"runs"`
	Gaps     []PictureGap `json:"gaps"`
	First    time.Time    `json:"first_time"`
	Last     time.Time    `json:"last_time"`
	Bytes    int64        `json:"bytes"`
	Segments int          `json:"segments"`
}

// PictureRun is a run of consecutive segments.
type PictureRun struct {
	First    string    `json:"first"`
	Last     string    `json:"last"`
	Segments int       `json:"segments"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
}

// PictureGap is the hole between two runs: the segments missing, and
// when the archive went on after it.
type PictureGap struct {
	First   string    `json:"first_missing"`
	Last    string    `json:"last_missing"`
	Missing int       `json:"missing"`
	At      time.Time `json:"at"` // when the segment after the gap was stored
}

// PictureFork is a timeline switch that the parent went on past.
type PictureFork struct {
	Parent    uint32    `json:"parent"`
	Child     uint32    `json:"child"`
	At        wal.LSN   `json:"at"`
	AtTime    time.Time `json:"at_time"` // when the child's history file was stored
	DeadChild bool      `json:"dead_child"`
	Both      bool      `json:"ambiguous"`
	Text      string    `json:"text"`
}

// HourBytes is the WAL stored in one hour.
type HourBytes struct {
	Hour  time.Time `json:"hour"`
	Bytes int64     `json:"bytes"`
}

// Draw computes an inventory's picture as of now.
func Draw(inv *Inventory, now time.Time) Picture {
	p := Picture{Backups: []PictureBackup{}, Timelines: []PictureTimeline{}, Forks: []PictureFork{}, WALPerHour: []HourBytes{}}
	var oldest, newest time.Time
	span := func(from, to time.Time) {
		if !from.IsZero() && (oldest.IsZero() || from.Before(oldest)) {
			oldest = from
		}
		if to.After(newest) {
			newest = to
		}
	}
	for _, r := range inv.Backups.Complete {
		p.Backups = append(p.Backups, PictureBackup{r.ID, r.StartTime, r.StopTime, r.StartTLI, r.RawSize, r.StoredSize})
		span(r.StartTime, r.StopTime)
	}
	dead := inv.dead()
	for _, tli := range inv.Timelines() {
		t := PictureTimeline{Timeline: tli, Dead: dead[tli], Runs: []PictureRun{}, Gaps: []PictureGap{}}
		if parent, at, ok := inv.Histories.Parent(tli); ok {
			t.Parent, t.SwitchPoint = parent, at
			if hf, ok := inv.File(wal.Name{Kind: wal.History, TLI: tli}); ok {
				t.Began = inv.written(hf)
			}
		}
		rs := inv.Ranges(tli)
		for i, rg := range rs {
			run := PictureRun{First: rg.First.String(), Last: rg.Last.String(), Segments: rg.Count}
			if f, ok := inv.File(rg.First); ok {
				run.From = inv.written(f)
			}
			if f, ok := inv.File(rg.Last); ok {
				run.To = inv.written(f)
			}
			if run.To.Before(run.From) {
				run.From, run.To = run.To, run.From
			}
			t.Runs = append(t.Runs, run)
			span(run.From, run.To)
			t.Segments += rg.Count
			if i > 0 {
				g := GapBetween(rs[i-1], rg, inv.SegSize)
				t.Gaps = append(t.Gaps, PictureGap{First: g.First.String(), Last: g.Last.String(), Missing: g.Count, At: run.From})
			}
		}
		for _, f := range inv.Files {
			if f.Name.TLI != tli {
				continue
			}
			w := inv.written(f)
			t.Bytes += f.Info.Size
			if t.First.IsZero() || w.Before(t.First) {
				t.First = w
			}
			if w.After(t.Last) {
				t.Last = w
			}
		}
		p.Timelines = append(p.Timelines, t)
	}
	for _, f := range inv.Forks() {
		pf := PictureFork{Parent: f.Parent, Child: f.Child, At: f.At, DeadChild: f.DeadChild, Both: f.Both, Text: f.String()}
		if hf, ok := inv.File(wal.Name{Kind: wal.History, TLI: f.Child}); ok {
			pf.AtTime = inv.written(hf)
		}
		p.Forks = append(p.Forks, pf)
	}
	for _, f := range p.Forks {
		// A fork in the axis's time (or after the newest WAL: a promotion
		// whose first segment is not stored yet) is in what is drawn.
		if !f.AtTime.Before(oldest) {
			span(f.AtTime, f.AtTime)
		}
	}
	if !oldest.IsZero() && !newest.After(oldest) {
		// One instant (a single segment): a minute either side.
		oldest, newest = oldest.Add(-time.Minute), oldest.Add(time.Minute)
	}
	p.From, p.To = NullTime{oldest}, NullTime{newest}
	// WAL per hour, the last 48 hours.
	start := now.Truncate(time.Hour).Add(-47 * time.Hour)
	hours := make([]int64, 48)
	for _, f := range inv.Files {
		w := inv.written(f)
		if w.Before(start) || w.After(now) {
			continue
		}
		hours[int(w.Sub(start)/time.Hour)] += f.Info.Size
	}
	for i, b := range hours {
		p.WALPerHour = append(p.WALPerHour, HourBytes{Hour: start.Add(time.Duration(i) * time.Hour), Bytes: b})
	}
	sort.Slice(p.Backups, func(i, j int) bool { return p.Backups[i].Start.Before(p.Backups[j].Start) })
	return p
}

// GapBetween is the hole between two consecutive runs of one timeline.
func GapBetween(a, b Range, segSize int64) Range {
	first := a.Last.Next(segSize)
	last, _ := b.First.Prev(segSize)
	return Range{TLI: a.TLI, First: first, Last: last, Count: int(b.First.SegNo(segSize) - a.Last.SegNo(segSize) - 1)}
}
