// Package retention decides which backups an archive keeps and which WAL
// no kept backup needs, and deletes the rest.
//
// The rules, in plain words:
//
//   - Keep the newest KeepLast completed backups (at least one: the newest
//     backup is never deleted). With KeepWithin, keep what recovery to any
//     point of the last KeepWithin needs: every backup that ended within
//     it, and the newest one that ended before it (a point early in the
//     window is reached from there). Delete the other completed backups.
//   - Delete incomplete backups (no completion record) untouched for
//     longer than KeepIncomplete: a failed or interrupted backup.
//   - Find the oldest start position among the kept backups, read from
//     each one's .backup history file in the archive (START WAL LOCATION
//     and START TIMELINE), never guessed from file names. Delete every
//     segment, .partial and .backup file whose position precedes it, on
//     every timeline. Everything at or after it stays, on every timeline,
//     so whatever timeline a kept backup or a later promotion needs is
//     there.
//   - Never delete a .history file.
//   - If a kept backup's .backup file is missing or unreadable, stop with
//     an error and delete nothing.
//
// The plan is a pure function (Plan) of the backups, the WAL list, the
// policy and the time; Apply carries it out. New WAL pushed meanwhile is
// always newer than the oldest kept backup, so retention is safe while
// archiving goes on.
package retention

import (
	"fmt"
	"sort"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// Policy says what to keep.
type Policy struct {
	KeepLast       int
	KeepWithin     time.Duration
	KeepIncomplete time.Duration // default 24 h
}

// Backup is what the plan needs to know of a completed backup.
type Backup struct {
	ID       string
	StopTime time.Time
	StartTLI uint32
	StartLSN wal.LSN // from the backup's .backup file
}

// Incomplete is a backup without a completion record.
type Incomplete struct {
	ID        string
	LastWrite time.Time
}

// WALFile is a WAL file in the archive.
type WALFile struct {
	Name wal.Name
	Key  string
	Size int64
}

// Plan is what retention will do.
type Plan struct {
	Keep             []string  // backup ids kept, oldest first
	Delete           []string  // completed backups deleted
	DeleteIncomplete []string  // incomplete backups deleted
	DeleteWAL        []WALFile // in order
	// KeepFrom is the start segment of the oldest kept backup: every WAL
	// file before it is deleted, nothing from it on.
	KeepFrom wal.Name
}

// MakePlan computes the plan. With no completed backup it deletes nothing
// but incomplete ones: there is no backup to bound the WAL.
func MakePlan(backups []Backup, incomplete []Incomplete, files []WALFile, segSize int64, p Policy, now time.Time) (Plan, error) {
	if p.KeepLast < 1 {
		return Plan{}, fmt.Errorf("%w: --keep-last must be at least 1: the newest backup is never deleted", errkind.ErrInvalid)
	}
	if p.KeepIncomplete <= 0 {
		p.KeepIncomplete = 24 * time.Hour
	}
	var plan Plan
	for _, in := range incomplete {
		if now.Sub(in.LastWrite) > p.KeepIncomplete {
			plan.DeleteIncomplete = append(plan.DeleteIncomplete, in.ID)
		}
	}
	sort.Strings(plan.DeleteIncomplete)
	if len(backups) == 0 {
		return plan, nil
	}
	if !wal.ValidSegmentSize(segSize) {
		return Plan{}, fmt.Errorf("%w: segment size %d", errkind.ErrInvalid, segSize)
	}
	bs := append([]Backup(nil), backups...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].StopTime.Before(bs[j].StopTime) })
	// The newest backup that ended before the window opened: recovery to
	// the window's first moments starts from it.
	anchor := -1
	if p.KeepWithin > 0 {
		for i, b := range bs {
			if now.Sub(b.StopTime) > p.KeepWithin {
				anchor = i
			}
		}
	}
	var kept []Backup
	for i, b := range bs {
		newest := i >= len(bs)-p.KeepLast
		recent := p.KeepWithin > 0 && now.Sub(b.StopTime) <= p.KeepWithin
		if newest || recent || i == anchor {
			kept = append(kept, b)
			plan.Keep = append(plan.Keep, b.ID)
		} else {
			plan.Delete = append(plan.Delete, b.ID)
		}
	}
	oldest := kept[0]
	for _, b := range kept[1:] {
		if b.StartLSN < oldest.StartLSN {
			oldest = b
		}
	}
	threshold := uint64(oldest.StartLSN) / uint64(segSize)
	plan.KeepFrom = wal.SegmentName(oldest.StartTLI, threshold, segSize)
	for _, f := range files {
		if f.Name.Kind == wal.History {
			continue
		}
		if f.Name.SegNo(segSize) < threshold {
			plan.DeleteWAL = append(plan.DeleteWAL, f)
		}
	}
	sort.Slice(plan.DeleteWAL, func(i, j int) bool { return wal.Compare(plan.DeleteWAL[i].Name, plan.DeleteWAL[j].Name) < 0 })
	return plan, nil
}
