package admin

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// ListReport is walstored list: an archive's backups and WAL.
type ListReport struct {
	Archive     string                    `json:"archive"`
	SystemID    string                    `json:"system_identifier"`
	SegmentSize int64                     `json:"wal_segment_size"`
	Encrypted   bool                      `json:"encrypted"`
	Backups     []archive.Record          `json:"backups"`
	Unreadable  []string                  `json:"unreadable_backups"`
	Incomplete  []Incomplete              `json:"incomplete_backups"`
	Timelines   []Timeline                `json:"timelines"`
	Warnings    []string                  `json:"warnings"`
	Retired     []archive.RetiredTimeline `json:"retired_timelines"`
	Quarantined []archive.Quarantined     `json:"quarantined"`
	Stores      []store.Health            `json:"stores"`
}

// Incomplete is a backup without a completion record.
type Incomplete struct {
	ID        string    `json:"id"`
	Objects   int       `json:"objects"`
	Bytes     int64     `json:"bytes"`
	LastWrite time.Time `json:"last_write"`
}

// Timeline is one timeline's WAL.
type Timeline struct {
	Timeline    uint32   `json:"timeline"`
	Parent      uint32   `json:"parent"`
	SwitchPoint *wal.LSN `json:"switch_point"`
	Ranges      []Range  `json:"ranges"`
	Gaps        []Range  `json:"gaps"`
	Dead        bool     `json:"dead_branch"`
}

// Range is a run of segments (or of missing ones).
type Range struct {
	First wal.Name `json:"first"`
	Last  wal.Name `json:"last"`
	Count int      `json:"count"`
}

// List builds the report of an inventory.
func List(inv *catalog.Inventory, sysid uint64, stores []store.Health) ListReport {
	r := ListReport{Archive: inv.Archive, SegmentSize: inv.SegSize, Encrypted: inv.Encrypted,
		Backups: inv.Backups.Complete, Unreadable: []string{}, Incomplete: []Incomplete{}, Timelines: []Timeline{},
		Warnings: []string{}, Retired: []archive.RetiredTimeline{}, Stores: stores}
	if sysid != 0 {
		r.SystemID = fmt.Sprint(sysid)
	}
	if r.Backups == nil {
		r.Backups = []archive.Record{}
	}
	if r.Stores == nil {
		r.Stores = []store.Health{}
	}
	for id := range inv.Backups.Unreadable {
		r.Unreadable = append(r.Unreadable, id)
	}
	sort.Strings(r.Unreadable)
	for id, p := range inv.Backups.Incomplete {
		r.Incomplete = append(r.Incomplete, Incomplete{id, p.Objects, p.Bytes, p.Newest.UTC()})
	}
	sort.Slice(r.Incomplete, func(i, j int) bool { return r.Incomplete[i].ID < r.Incomplete[j].ID })
	dead := map[uint32]bool{}
	for _, t := range inv.DeadTimelines() {
		dead[t] = true
	}
	for _, f := range inv.Forks() {
		r.Warnings = append(r.Warnings, f.String())
	}
	for _, tli := range inv.Timelines() {
		tj := Timeline{Timeline: tli, Ranges: []Range{}, Gaps: []Range{}, Dead: dead[tli]}
		if parent, at, ok := inv.Histories.Parent(tli); ok {
			tj.Parent, tj.SwitchPoint = parent, &at
		}
		rs := inv.Ranges(tli)
		for i, rg := range rs {
			tj.Ranges = append(tj.Ranges, Range{rg.First, rg.Last, rg.Count})
			if i > 0 {
				g := catalog.GapBetween(rs[i-1], rg, inv.SegSize)
				tj.Gaps = append(tj.Gaps, Range{g.First, g.Last, g.Count})
			}
		}
		r.Timelines = append(r.Timelines, tj)
	}
	for _, rt := range inv.Retired {
		r.Retired = append(r.Retired, rt)
	}
	sort.Slice(r.Retired, func(i, j int) bool { return r.Retired[i].Timeline < r.Retired[j].Timeline })
	r.Quarantined = append([]archive.Quarantined{}, inv.Quarantined...)
	return r
}

// PrintList prints the report for people.
func PrintList(w io.Writer, r ListReport) {
	fmt.Fprintf(w, "archive %s", r.Archive)
	if r.SystemID != "" {
		fmt.Fprintf(w, " (PostgreSQL system %s", r.SystemID)
		if r.SegmentSize > 0 {
			fmt.Fprintf(w, ", %d MiB segments", r.SegmentSize>>20)
		}
		if r.Encrypted {
			fmt.Fprint(w, ", encrypted")
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\nbackups:")
	if len(r.Backups) == 0 && len(r.Unreadable) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else if len(r.Backups) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tSTART LSN\tSTOP LSN\tTL\tSTARTED (UTC)\tENDED (UTC)\tSIZE\tSTORED")
		for _, b := range r.Backups {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", b.ID, b.StartLSN, b.StopLSN, b.StartTLI,
				b.StartTime.UTC().Format("2006-01-02 15:04:05"), b.StopTime.UTC().Format("2006-01-02 15:04:05"), Size(b.RawSize), Size(b.StoredSize))
		}
		tw.Flush()
	}
	for _, id := range r.Unreadable {
		fmt.Fprintf(w, "  %s: completion record encrypted (give the archive's key to see it)\n", id)
	}
	for _, p := range r.Incomplete {
		fmt.Fprintf(w, "  incomplete: %s (%s, %s, last write %s): in progress or failed; retain removes it after a day\n",
			p.ID, Count(p.Objects, "object", "objects"), Size(p.Bytes), p.LastWrite.Format(time.RFC3339))
	}
	fmt.Fprintln(w, "\nWAL by timeline:")
	if len(r.Timelines) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, tl := range r.Timelines {
		head := fmt.Sprintf("  timeline %d", tl.Timeline)
		if tl.SwitchPoint != nil {
			head += fmt.Sprintf(" (from timeline %d at %s)", tl.Parent, tl.SwitchPoint)
		}
		if tl.Dead {
			head += " DEAD BRANCH"
		}
		fmt.Fprintln(w, head+":")
		if len(tl.Ranges) == 0 {
			fmt.Fprintln(w, "    no segments yet")
		}
		for i, rg := range tl.Ranges {
			if i > 0 {
				g := tl.Gaps[i-1]
				fmt.Fprintf(w, "    GAP %s .. %s (%d missing)\n", g.First, g.Last, g.Count)
			}
			fmt.Fprintf(w, "    %s .. %s (%s)\n", rg.First, rg.Last, Count(rg.Count, "segment", "segments"))
		}
	}
	for _, rt := range r.Retired {
		fmt.Fprintf(w, "  timeline %d: retired %s%s (%s, %s; walstored timeline restore brings it back)\n", rt.Timeline, rt.At.Format(time.RFC3339), reason(rt.Reason), Count(len(rt.Files), "file", "files"), Size(rt.Bytes))
	}
	if len(r.Quarantined) > 0 {
		fmt.Fprintln(w, "\nquarantined (set aside, not served; walstored unquarantine puts one back):")
		for _, q := range r.Quarantined {
			fmt.Fprintf(w, "  %s sha256 %s (%s) %s by %s%s\n", q.Name, q.SHA256[:12], Size(q.Bytes), q.At.Format(time.RFC3339), q.By, reason(q.Reason))
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "\nWARNING %s\n", warn)
	}
	if len(r.Stores) > 1 {
		fmt.Fprintln(w, "\nstores behind walstored:")
		for _, st := range r.Stores {
			state := "up"
			if !st.Up {
				state = "DOWN (" + st.LastError + ")"
			}
			fmt.Fprintf(w, "  %s: %s, %s owed (copied at the next sync)\n", st.Name, state, Count(st.Owed, "object", "objects"))
		}
	}
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}
