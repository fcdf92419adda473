package catalog

import (
	"fmt"
	"sort"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/wal"
)

// This file is pure: what the archive's timelines mean for recovery, from
// names, numbers, parsed history files and backup records.

// Fork is a timeline switch after which the parent timeline went on
// writing: two branches of one history, of which at most one can be what
// the cluster really did. Left alone, recovery_target_timeline = 'latest'
// follows the higher-numbered branch, whatever it holds.
//
// Which branch is live is decided, in this order, by the kept backups (a
// backup taken after the fork on one branch only makes that one live;
// backups on both make the fork ambiguous, Both) and else by activity:
// the branch the archive received WAL on last is live. A dead child is a
// problem (a restore that opened by mistake, a standby that promoted
// itself); an abandoned parent continuation is what every
// point-in-time restore leaves behind, or an old primary not fenced.
type Fork struct {
	Parent uint32  // the timeline that went on
	Child  uint32  // the timeline that forked from it
	At     wal.LSN // the switch point
	// ParentLast is the newest segment of the parent after the fork.
	ParentLast wal.Name
	// DeadChild: the child's branch is the dead one. Otherwise the
	// parent's continuation is (with Abandoned, the timelines that forked
	// from that continuation).
	DeadChild bool
	// Both: kept backups lie on both branches after the fork; which one
	// is dead is not the program's to decide.
	Both bool
	// Abandoned are the timelines that forked from the parent's dead
	// continuation (when the child is live).
	Abandoned []uint32
	// Tail: the parent went on only within the segment holding the
	// switch point: the last segment of a primary that crashed or was
	// stopped when the child took over (archived before its rewind),
	// not a server that kept writing.
	Tail bool
}

func (f Fork) String() string {
	if f.Both {
		return fmt.Sprintf("timeline %d forked from timeline %d at %s, and timeline %d went on to %s; backups were taken on both branches since: one of them is dead, retire it (walstored timeline retire)",
			f.Child, f.Parent, f.At, f.Parent, f.ParentLast)
	}
	if f.DeadChild {
		return fmt.Sprintf("timeline %d forked from timeline %d at %s, but timeline %d went on to %s: timeline %d is a dead branch (retire it with walstored timeline retire --timeline %d)",
			f.Child, f.Parent, f.At, f.Parent, f.ParentLast, f.Child, f.Child)
	}
	also := ""
	if len(f.Abandoned) > 0 {
		also = fmt.Sprintf(" (so are timelines %v, which forked from it)", f.Abandoned)
	}
	if f.Tail && len(f.Abandoned) == 0 {
		return fmt.Sprintf("timeline %d's segment %s holds WAL written after timeline %d forked from it at %s: the last segment of the primary that timeline %d replaced, archived as it stopped or before it was rewound (Patroni does this after a failover); recovery follows timeline %d, nothing to do",
			f.Parent, f.ParentLast, f.Child, f.At, f.Child, f.Child)
	}
	return fmt.Sprintf("timeline %d went on to %s after timeline %d forked from it at %s: that part of timeline %d is abandoned%s, as a point-in-time restore leaves it (if a server is still writing timeline %d, fence it); recovery follows timeline %d",
		f.Parent, f.ParentLast, f.Child, f.At, f.Parent, also, f.Parent, f.Child)
}

// descends reports whether timeline t is root or descends from it: root
// holds part of t's history (an ancestor whose range a later switch point
// covers, as a second restore to before a fork leaves one, does not).
func (h Histories) descends(t, root uint32) bool {
	if t == root {
		return true
	}
	for _, s := range h.Effective(t) {
		if s.TLI == root {
			return true
		}
	}
	return false
}

// branchesOffAfter reports whether timeline t left timeline p after
// position at (p holds part of t's history, up to a point later than at).
func (h Histories) branchesOffAfter(t, p uint32, at wal.LSN) bool {
	for _, s := range h.Effective(t) {
		if s.TLI == p && s.End != 0 {
			return s.End > at
		}
	}
	return false
}

// Forks returns the contested forks of the archive, by child timeline.
func (inv *Inventory) Forks() []Fork {
	if inv.SegSize == 0 {
		return nil
	}
	var out []Fork
	for _, child := range inv.sortedHistories() {
		parent, at, ok := inv.Histories.Parent(child)
		if !ok {
			continue
		}
		// A full segment of the parent from the one holding the switch
		// point on holds WAL written after it (a promotion leaves the
		// parent's switch segment as .partial, not as a segment).
		forkSeg := uint64(at) / uint64(inv.SegSize)
		segs := inv.Segments[parent]
		if len(segs) == 0 || segs[len(segs)-1] < forkSeg {
			continue
		}
		f := Fork{Parent: parent, Child: child, At: at, ParentLast: wal.SegmentName(parent, segs[len(segs)-1], inv.SegSize)}
		f.Tail = segs[len(segs)-1] == forkSeg
		// The two sides: the child's subtree, and the parent after the
		// fork with the timelines that left it later.
		childSide := func(t uint32) bool { return inv.Histories.descends(t, child) }
		parentSide := func(t uint32) bool {
			return !childSide(t) && t != parent && inv.Histories.branchesOffAfter(t, parent, at)
		}
		childFollowed, parentFollowed := false, false
		for _, b := range inv.Backups.Complete {
			start, err := b.Start()
			if err != nil || start < at {
				continue
			}
			switch {
			case childSide(b.StartTLI):
				childFollowed = true
			case b.StartTLI == parent || parentSide(b.StartTLI):
				parentFollowed = true
			}
		}
		var childLast, parentLast time.Time
		for _, file := range inv.Files {
			t, mt := file.Name.TLI, inv.written(file)
			switch {
			case childSide(t):
				childLast = later(childLast, mt)
			case parentSide(t), t == parent && file.Name.Kind == wal.Segment && file.Name.SegNo(inv.SegSize) >= forkSeg:
				parentLast = later(parentLast, mt)
			}
		}
		switch {
		case childFollowed && parentFollowed:
			f.Both = true
		case childFollowed:
		case parentFollowed:
			f.DeadChild = true
		default:
			f.DeadChild = !childLast.After(parentLast)
		}
		if !f.DeadChild && !f.Both {
			for _, t := range inv.sortedHistories() {
				if parentSide(t) {
					f.Abandoned = append(f.Abandoned, t)
				}
			}
		}
		out = append(out, f)
	}
	return out
}

// written is when a WAL file was stored: its modification time, except
// for a file moved back from retirement, which keeps the time of the
// newest file of its timeline when it was retired.
func (inv *Inventory) written(f File) time.Time {
	r, ok := inv.Restored[f.Name.TLI]
	if ok && !f.Info.ModTime.After(r.RestoredAt) && !r.NewestWrite.IsZero() && f.Info.ModTime.After(r.NewestWrite) {
		return r.NewestWrite
	}
	return f.Info.ModTime
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (inv *Inventory) sortedHistories() []uint32 {
	var ts []uint32
	for t := range inv.Histories {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// dead returns the timelines recovery must not follow: dead child
// branches (and everything that descends from them), and the timelines
// that forked from an abandoned continuation.
func (inv *Inventory) dead() map[uint32]bool {
	out := map[uint32]bool{}
	for _, f := range inv.Forks() {
		for _, t := range f.Abandoned {
			for u := range inv.Histories {
				if inv.Histories.descends(u, t) {
					out[u] = true
				}
			}
		}
		if !f.DeadChild {
			continue
		}
		for t := range inv.Histories {
			if inv.Histories.descends(t, f.Child) {
				out[t] = true
			}
		}
	}
	return out
}

// DeadTimelines lists the timelines recovery must not follow (see dead).
func (inv *Inventory) DeadTimelines() []uint32 {
	var out []uint32
	for t := range inv.dead() {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ChooseTimeline is the timeline recovery from backup r should follow:
// the newest timeline whose history contains the backup's start, leaving
// out dead branches. Among several unrelated branches that qualify, the
// only one a kept backup was taken on, else the one written last, is
// live; when that does not decide (backups on several, or no difference)
// the choice is not the program's to make: ambiguous names them.
func (inv *Inventory) ChooseTimeline(r archive.Record) (target uint32, ambiguous []uint32, err error) {
	start, err := r.Start()
	if err != nil {
		return 0, nil, err
	}
	dead := inv.dead()
	var cands []uint32
	for t := range inv.Histories {
		if !dead[t] && (t == r.StartTLI || inv.Histories.OnLineage(t, r.StartTLI, start)) {
			cands = append(cands, t)
		}
	}
	if len(cands) == 0 {
		cands = []uint32{r.StartTLI}
	}
	var leaves []uint32
	for _, t := range cands {
		leaf := true
		for _, u := range cands {
			if u != t && inv.Histories.descends(u, t) {
				leaf = false
				break
			}
		}
		if leaf {
			leaves = append(leaves, t)
		}
	}
	sort.Slice(leaves, func(i, j int) bool { return leaves[i] < leaves[j] })
	if len(leaves) > 1 {
		if t, ok := inv.liveLeaf(leaves); ok {
			return t, nil, nil
		}
		return 0, leaves, nil
	}
	return leaves[0], nil, nil
}

// liveLeaf picks among sibling branches the way Forks decides a fork: the
// only one a kept backup was taken on, else the only one written last.
func (inv *Inventory) liveLeaf(leaves []uint32) (uint32, bool) {
	var withBackup []uint32
	for _, t := range leaves {
		for _, b := range inv.Backups.Complete {
			if inv.Histories.descends(b.StartTLI, t) {
				withBackup = append(withBackup, t)
				break
			}
		}
	}
	switch len(withBackup) {
	case 1:
		return withBackup[0], true
	case 0:
	default:
		return 0, false
	}
	last := map[uint32]time.Time{}
	for _, f := range inv.Files {
		for _, t := range leaves {
			if inv.Histories.descends(f.Name.TLI, t) {
				last[t] = later(last[t], inv.written(f))
			}
		}
	}
	best, tie := leaves[0], false
	for _, t := range leaves[1:] {
		switch {
		case last[t].After(last[best]):
			best, tie = t, false
		case last[t].Equal(last[best]):
			tie = true
		}
	}
	return best, !tie
}

// PostgresLatest is the timeline PostgreSQL picks for recovery from r with
// recovery_target_timeline = 'latest': it probes for the history files of
// the timelines after the backup's, one by one, and stops at the first
// missing (a retired timeline's stand-in is there: walfetch serves it so
// that its number stays taken; following it is following its parent, see
// Follows). ok is false when that timeline's history does not contain the
// backup's start: PostgreSQL then refuses to start ("requested timeline is
// not a child of this server's history").
func (inv *Inventory) PostgresLatest(r archive.Record) (tli uint32, ok bool) {
	start, err := r.Start()
	if err != nil {
		return r.StartTLI, false
	}
	tli = r.StartTLI
	for {
		_, has := inv.Histories[tli+1]
		if _, standIn := inv.StandIns()[tli+1]; !has && !standIn {
			break
		}
		tli++
	}
	if h, ok := inv.StandIns()[tli]; ok && tli != r.StartTLI {
		return tli, wal.TimelineAt(tli, h, start) == r.StartTLI
	}
	return tli, tli == r.StartTLI || inv.Histories.OnLineage(tli, r.StartTLI, start)
}

// StandIns are the histories walfetch serves for retired timelines
// (archive.StandInHistory), by timeline.
func (inv *Inventory) StandIns() Histories {
	out := Histories{}
	for t, r := range inv.Retired {
		if r.StandIn == "" {
			continue
		}
		if h, err := wal.ParseHistory(t, []byte(r.StandIn)); err == nil {
			out[t] = h
		}
	}
	return out
}

// Follows is the timeline whose WAL recovery replays when it follows
// timeline tli: tli itself, or for a retired one, the parent its
// stand-in names (which holds all the WAL).
func (inv *Inventory) Follows(tli uint32) uint32 {
	for range 64 {
		h, ok := inv.StandIns()[tli]
		if !ok || len(h) == 0 {
			return tli
		}
		tli = h[len(h)-1].TLI
	}
	return tli
}
