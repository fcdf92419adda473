package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/wal"
)

const seg = 16 << 20

// Timeline 2 forked from 1 at 0/5800000 (inside segment 5); timeline 3
// forked from 2 at 0/8000000 (a segment boundary); timeline 4 forked from
// 1 at 0/3000000 (a sibling branch).
var hs = Histories{
	1: nil,
	2: {{TLI: 1, SwitchPoint: 0x5800000}},
	3: {{TLI: 1, SwitchPoint: 0x5800000}, {TLI: 2, SwitchPoint: 0x8000000}},
	4: {{TLI: 1, SwitchPoint: 0x3000000}},
}

func TestTimelineFor(t *testing.T) {
	for _, tc := range []struct {
		target uint32
		seg    uint64
		want   uint32
	}{
		{1, 9, 1},
		{2, 4, 1}, {2, 5, 2}, {2, 6, 2}, // the switch segment comes from the new timeline
		{3, 4, 1}, {3, 5, 2}, {3, 7, 2}, {3, 8, 3},
		{4, 2, 1}, {4, 3, 4},
	} {
		if got := hs.TimelineFor(tc.target, tc.seg, seg); got != tc.want {
			t.Errorf("TimelineFor(%d, seg %d) = %d, want %d", tc.target, tc.seg, got, tc.want)
		}
	}
}

func TestNewestAndLineage(t *testing.T) {
	for _, tc := range []struct {
		tli  uint32
		lsn  wal.LSN
		want uint32
	}{
		{1, 0x2000000, 4}, // before every fork: the newest timeline overall
		{1, 0x4000000, 3}, // after timeline 4 forked away, before 2 did
		{1, 0x6000000, 1}, // timeline 1 after both forks: only itself
		{2, 0x6000000, 3},
		{3, 0x9000000, 3},
	} {
		if got := hs.Newest(tc.tli, tc.lsn); got != tc.want {
			t.Errorf("Newest(%d, %s) = %d, want %d", tc.tli, tc.lsn, got, tc.want)
		}
	}
	if err := hs.Check(); err != nil {
		t.Fatal(err)
	}
	bad := Histories{1: nil, 3: {{TLI: 1, SwitchPoint: 5}, {TLI: 2, SwitchPoint: 9}}, 2: {{TLI: 1, SwitchPoint: 6}}}
	if bad.Check() == nil {
		t.Fatal("disagreeing histories accepted")
	}
}

// inventory builds an inventory of segments (timeline, first, last
// segment number) and histories, with backups starting at the given
// positions, for the pure timeline logic.
func inventory(hs Histories, segs map[uint32][2]uint64, backups ...archive.Record) *Inventory {
	inv := &Inventory{Archive: "t", SegSize: seg, Segments: map[uint32][]uint64{}, Histories: hs, byName: map[wal.Name]File{}}
	for tli, r := range segs {
		for s := r[0]; s <= r[1]; s++ {
			inv.Segments[tli] = append(inv.Segments[tli], s)
			n := wal.SegmentName(tli, s, seg)
			inv.byName[n] = File{Name: n}
			inv.Files = append(inv.Files, File{Name: n})
		}
	}
	inv.Backups.Complete = backups
	return inv
}

func backup(id string, tli uint32, start string) archive.Record {
	return archive.Record{ID: id, StartTLI: tli, StartLSN: start}
}

// The dead branch of issue 13: a PITR on timeline 2 left a standby that
// promoted itself to timeline 3 (one segment), while timeline 2 went on
// and took the newest backup. Timeline 3 is dead; recovery from the
// newest backup follows 2; PostgreSQL's 'latest' would pick 3 and fail.
func TestDeadBranch(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x3000000}}, 3: {{TLI: 1, SwitchPoint: 0x3000000}, {TLI: 2, SwitchPoint: 0x5800000}}}
	segs := map[uint32][2]uint64{1: {1, 2}, 2: {3, 9}, 3: {5, 5}}
	b1 := backup("b1", 1, "0/1000028")
	b2 := backup("b2", 2, "0/7000028")
	inv := inventory(h, segs, b1, b2)
	forks := inv.Forks()
	if len(forks) != 1 || forks[0].Child != 3 || !forks[0].DeadChild || forks[0].ParentLast.String() != "000000020000000000000009" {
		t.Fatalf("forks: %+v", forks)
	}
	if tl, amb, _ := inv.ChooseTimeline(b2); tl != 2 || amb != nil {
		t.Fatalf("choose for b2: %d %v, want 2", tl, amb)
	}
	if tl, amb, _ := inv.ChooseTimeline(b1); tl != 2 || amb != nil {
		t.Fatalf("choose for b1 (before the fork to 3): %d %v, want 2 (3 is dead)", tl, amb)
	}
	if tl, ok := inv.PostgresLatest(b2); tl != 3 || ok {
		t.Fatalf("PostgreSQL's latest for b2: %d %v, want 3 and failing", tl, ok)
	}
	// Retired (gone from the histories and segments), recovery is clean.
	delete(h, 3)
	delete(segs, 3)
	inv = inventory(h, segs, b1, b2)
	if len(inv.Forks()) != 0 {
		t.Fatalf("forks after retiring 3: %+v", inv.Forks())
	}
	if tl, ok := inv.PostgresLatest(b2); tl != 2 || !ok {
		t.Fatalf("PostgreSQL's latest after retiring 3: %d %v", tl, ok)
	}
}

// An old primary that was not fenced goes on writing timeline 1 after a
// standby was promoted to 2; backups are taken on 2: the parent's
// continuation is what is dead, and recovery follows 2.
func TestUnfencedOldPrimary(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x5800000}}}
	inv := inventory(h, map[uint32][2]uint64{1: {1, 9}, 2: {5, 8}}, backup("b1", 1, "0/1000028"), backup("b2", 2, "0/7000028"))
	f := inv.Forks()
	if len(f) != 1 || f[0].DeadChild {
		t.Fatalf("forks: %+v, want timeline 1's continuation reported, not 2", f)
	}
	if tl, _, _ := inv.ChooseTimeline(backup("b1", 1, "0/1000028")); tl != 2 {
		t.Fatalf("choose: %d, want 2", tl)
	}
}

// Two branches from before a backup, neither dead by the rules: the
// choice is not the program's.
func TestAmbiguousBranches(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x5800000}}, 3: {{TLI: 1, SwitchPoint: 0x6800000}}}
	inv := inventory(h, map[uint32][2]uint64{1: {1, 6}, 2: {5, 8}, 3: {6, 7}},
		backup("b1", 1, "0/1000028"), backup("b2", 2, "0/7000028"), backup("b3", 3, "0/7000028"))
	_, amb, _ := inv.ChooseTimeline(backup("b1", 1, "0/1000028"))
	if len(amb) != 2 {
		t.Fatalf("ambiguous: %v, want [2 3]", amb)
	}
}

// A point-in-time restore to the middle of timeline 1 made timeline 3,
// after a standby had been promoted to 2 at the end of 1. Timeline 3 is
// written last: it is live, timeline 1 after the restore's target is
// abandoned, and so is 2, which forked from that abandoned part.
func TestPITRAbandonsTheParentsContinuation(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x8800000}}, 3: {{TLI: 1, SwitchPoint: 0x4800000}}}
	inv := inventory(h, map[uint32][2]uint64{1: {1, 7}, 2: {8, 8}, 3: {4, 6}}, backup("b1", 1, "0/1000028"))
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range inv.Files {
		f := &inv.Files[i]
		f.Info.ModTime = base.Add(time.Duration(f.Name.TLI) * time.Minute)
		if f.Name.TLI == 3 {
			f.Info.ModTime = base.Add(time.Hour)
		}
	}
	forks := inv.Forks()
	if len(forks) != 1 || forks[0].Child != 3 || forks[0].DeadChild || forks[0].Both || len(forks[0].Abandoned) != 1 || forks[0].Abandoned[0] != 2 {
		t.Fatalf("forks: %+v", forks)
	}
	if tl, amb, _ := inv.ChooseTimeline(backup("b1", 1, "0/1000028")); tl != 3 || amb != nil {
		t.Fatalf("choose: %d %v, want 3", tl, amb)
	}
	// Had timeline 1 gone on after 3 was made, 3 would be the dead one.
	for i := range inv.Files {
		if f := &inv.Files[i]; f.Name.TLI == 1 && f.Name.Seg == 7 {
			f.Info.ModTime = base.Add(2 * time.Hour)
		}
	}
	if f := inv.Forks(); len(f) != 1 || !f[0].DeadChild {
		t.Fatalf("forks with timeline 1 written last: %+v", f)
	}
}

// A switch point at a segment boundary: the parent's segment that starts
// there is WAL written after the fork.
func TestForkAtASegmentBoundary(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x3000000}}}
	if f := inventory(h, map[uint32][2]uint64{1: {1, 2}, 2: {3, 4}}).Forks(); len(f) != 0 {
		t.Fatalf("parent ended at the fork: %+v", f)
	}
	if f := inventory(h, map[uint32][2]uint64{1: {1, 3}, 2: {3, 4}}).Forks(); len(f) != 1 || f[0].ParentLast.String() != "000000010000000000000003" || !f[0].Tail || strings.Contains(f[0].String(), "fence") {
		t.Fatalf("parent wrote the segment after the fork: %+v", f)
	}
	// A parent that went on past the fork's segment may still be writing.
	if f := inventory(h, map[uint32][2]uint64{1: {1, 5}, 2: {3, 4}}).Forks(); len(f) != 1 || f[0].Tail {
		t.Fatalf("parent went on: %+v", f)
	}
}

// A second point-in-time restore of the backup to a point before the
// first fork (shared/MEASURED.md): timeline 2 forked from 1 at
// 0/C000000, and timeline 3's history says it forked from 2 at 0/80045A0,
// below that. As PostgreSQL reads it, timeline 3 holds from 0/80045A0 and
// timeline 1 below: timeline 3 forked from 1, and both 1's continuation
// and timeline 2 are abandoned once 3 is the live one.
func TestSecondRestoreBeforeAFork(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0xC000000}}, 3: {{TLI: 1, SwitchPoint: 0xC000000}, {TLI: 2, SwitchPoint: 0x80045A0}}}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	if p, at, ok := h.Parent(3); !ok || p != 1 || at != 0x80045A0 {
		t.Fatalf("parent of 3: %d %s %v", p, at, ok)
	}
	for _, tc := range []struct {
		seg  uint64
		want uint32
	}{{7, 1}, {8, 3}, {0xB, 3}, {0xC, 3}, {0xD, 3}} {
		if got := h.TimelineFor(3, tc.seg, seg); got != tc.want {
			t.Errorf("TimelineFor(3, seg %X) = %d, want %d", tc.seg, got, tc.want)
		}
	}
	if h.OnLineage(3, 1, 0x9000000) || !h.OnLineage(3, 1, 0x7000000) || h.OnLineage(3, 2, 0xD000000) {
		t.Error("OnLineage")
	}
	if h.descends(3, 2) || !h.descends(3, 1) {
		t.Error("timeline 3 holds nothing of timeline 2")
	}
	inv := inventory(h, map[uint32][2]uint64{1: {1, 0xB}, 2: {0xC, 0xE}, 3: {8, 9}}, backup("b1", 1, "0/1000028"))
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for i := range inv.Files {
		f := &inv.Files[i]
		f.Info.ModTime = base.Add(time.Duration(f.Name.TLI) * time.Minute)
	}
	forks := inv.Forks()
	var f3 *Fork
	for i := range forks {
		if forks[i].Child == 3 {
			f3 = &forks[i]
		}
	}
	if f3 == nil || f3.Parent != 1 || f3.At != 0x80045A0 || f3.DeadChild || len(f3.Abandoned) != 1 || f3.Abandoned[0] != 2 {
		t.Fatalf("forks: %+v", forks)
	}
	if dead := inv.DeadTimelines(); len(dead) != 1 || dead[0] != 2 {
		t.Fatalf("dead timelines %v, want [2]", dead)
	}
	if tl, amb, err := inv.ChooseTimeline(backup("b1", 1, "0/1000028")); err != nil || tl != 3 || amb != nil {
		t.Fatalf("choose: %d %v %v, want 3", tl, amb, err)
	}
	if tl, ok := inv.PostgresLatest(backup("b1", 1, "0/1000028")); tl != 3 || !ok {
		t.Fatalf("PostgreSQL's latest: %d %v", tl, ok)
	}
	// A backup taken on timeline 1 after 3 forked away is not in 3's history.
	if tl, ok := inv.PostgresLatest(backup("b2", 1, "0/9000028")); ok {
		t.Fatalf("a backup past the fork on timeline 1 must not follow 3: %d", tl)
	}
}

// A retired timeline keeps its number: walfetch serves a stand-in
// history under which its parent holds all WAL. PostgreSQL's 'latest'
// reaches it and replays the parent's WAL; a timeline promoted later gets
// the next number and names the retired one as its parent, and the
// catalog reads it as forked from the parent.
func TestRetiredTimelineKeepsItsNumber(t *testing.T) {
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x3000000}}}
	inv := inventory(h, map[uint32][2]uint64{1: {1, 2}, 2: {3, 9}}, backup("b2", 2, "0/7000028"))
	standIn := archive.StandInHistory(3, 2, h[2])
	inv.Retired = map[uint32]archive.RetiredTimeline{3: {Timeline: 3, StandIn: string(standIn)}}
	if tl, ok := inv.PostgresLatest(backup("b2", 2, "0/7000028")); tl != 3 || !ok || inv.Follows(tl) != 2 {
		t.Fatalf("PostgreSQL's latest: %d %v, follows %d; want 3, true, following 2", tl, ok, inv.Follows(tl))
	}
	sh, err := wal.ParseHistory(3, standIn)
	if err != nil {
		t.Fatal(err)
	}
	if at := wal.TimelineAt(3, sh, 0x7000028); at != 2 {
		t.Fatalf("under the stand-in, 0/7000028 is on timeline %d, want 2", at)
	}
	// Timeline 4, promoted from a server that followed the stand-in.
	four := append(append([]wal.HistoryEntry{}, sh...), wal.HistoryEntry{TLI: 3, SwitchPoint: 0xA000100})
	inv.Histories[4] = four
	if err := inv.Histories.CheckWith(inv.StandIns()); err != nil {
		t.Fatal(err)
	}
	if inv.Histories.Check() == nil {
		t.Fatal("without the stand-in, timeline 4's parent is missing")
	}
	if p, at, ok := inv.Histories.Parent(4); !ok || p != 2 || at != 0xA000100 {
		t.Fatalf("timeline 4 forked from %d at %s, want 2 at 0/A000100", p, at)
	}
}
