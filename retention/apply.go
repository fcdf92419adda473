package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/catalog"
)

// Result is what a retention run removed (or would remove).
type Result struct {
	Archive           string   `json:"archive"`
	DryRun            bool     `json:"dry_run"`
	Kept              []string `json:"kept_backups"`
	DeletedBackups    []string `json:"deleted_backups"`
	DeletedIncomplete []string `json:"deleted_incomplete_backups"`
	BackupObjects     int      `json:"backup_objects_deleted"`
	BackupBytes       int64    `json:"backup_bytes_deleted"`
	PacksDeleted      int      `json:"packs_deleted"` // packs no kept backup uses
	PackBytes         int64    `json:"pack_bytes_deleted"`
	WALFiles          int      `json:"wal_files_deleted"`
	WALBytes          int64    `json:"wal_bytes_deleted"`
	WALFirst          string   `json:"wal_first_deleted"` // "" when none
	WALLast           string   `json:"wal_last_deleted"`
	KeepFrom          string   `json:"wal_kept_from"`
}

// Run plans retention for the archive with policy p and, unless dryRun,
// carries it out: expired backups first (each completion record before its
// parts), then incomplete ones, then the WAL no kept backup needs, oldest
// first. Any doubt about a kept backup's start stops the run before
// anything is deleted.
func Run(ctx context.Context, a *archive.Archive, p Policy, now time.Time, dryRun bool) (Result, error) {
	res := Result{Archive: a.Name, DryRun: dryRun}
	if !dryRun {
		// Two runs (two timers, two walstored hosts) never interleave.
		ttl := time.Hour
		if dl, ok := ctx.Deadline(); ok {
			ttl = time.Until(dl) + time.Minute
		}
		lease, err := archive.TakeLease(ctx, a.Store, a.Layout.Lease("retain"), "retention of archive "+a.Name, ttl)
		if err != nil {
			return res, err
		}
		defer lease.Release(context.WithoutCancel(ctx))
	}
	inv, err := catalog.Load(ctx, a)
	if err != nil {
		return res, err
	}
	if n := len(inv.Backups.Unreadable); n > 0 {
		return res, fmt.Errorf("%w: %d completion records of archive %s are encrypted and cannot be read without the archive's key (--encryption-key-file); nothing is deleted", errkind.ErrKey, n, a.Name)
	}
	var backups []Backup
	for _, r := range inv.Backups.Complete {
		b, err := crossChecked(ctx, a, r)
		if err != nil {
			return res, err
		}
		backups = append(backups, b)
	}
	var incomplete []Incomplete
	for id, pr := range inv.Backups.Incomplete {
		incomplete = append(incomplete, Incomplete{ID: id, LastWrite: pr.Newest})
	}
	var wal []WALFile
	for _, f := range inv.Files {
		wal = append(wal, WALFile{Name: f.Name, Key: f.Info.Key, Size: f.Info.Size})
	}
	plan, err := MakePlan(backups, incomplete, wal, inv.SegSize, p, now)
	if err != nil {
		return res, err
	}
	res.Kept, res.DeletedBackups, res.DeletedIncomplete = nonNil(plan.Keep), nonNil(plan.Delete), nonNil(plan.DeleteIncomplete)
	if len(plan.Keep) > 0 {
		res.KeepFrom = plan.KeepFrom.String()
	}
	for _, f := range plan.DeleteWAL {
		res.WALFiles++
		res.WALBytes += f.Size
	}
	if n := len(plan.DeleteWAL); n > 0 {
		res.WALFirst, res.WALLast = plan.DeleteWAL[0].Name.String(), plan.DeleteWAL[n-1].Name.String()
	}
	doomed := append(append([]string(nil), plan.Delete...), plan.DeleteIncomplete...)
	if dryRun {
		// What the real run would delete, counted the way it counts
		// (packs: those no backup uses now; the ones only doomed backups
		// use are freed by the real run).
		for _, id := range doomed {
			objs, err := a.BackupObjects(ctx, id)
			if err != nil {
				return res, err
			}
			for _, o := range objs {
				res.BackupObjects++
				res.BackupBytes += o.Size
			}
		}
		res.PacksDeleted, res.PackBytes, err = a.SweepPacks(ctx, true)
		return res, err
	}
	for _, id := range doomed {
		n, b, err := a.DeleteBackup(ctx, id)
		res.BackupObjects += n
		res.BackupBytes += b
		if err != nil {
			return res, fmt.Errorf("delete backup %s: %w", id, err)
		}
	}
	// The packs that only deleted backups used: a kept backup's contents
	// and a running backup's progress keep theirs.
	res.PacksDeleted, res.PackBytes, err = a.SweepPacks(ctx, false)
	if err != nil {
		return res, fmt.Errorf("sweep packs: %w", err)
	}
	for _, f := range plan.DeleteWAL {
		if err := a.Store.Delete(ctx, f.Key); err != nil && !errors.Is(err, errkind.ErrNotFound) {
			return res, fmt.Errorf("delete %s: %w", f.Name, err)
		}
	}
	// The record of the run: what the status page draws the next cut
	// from, and what a DBA reads to learn why a backup is gone. A run
	// over an archive without a backup leaves none: it must not make an
	// archive exist (a typo with --allow-empty).
	if len(inv.Backups.Complete) == 0 {
		return res, nil
	}
	run := archive.RetentionRun{
		ID: fmt.Sprintf("%s-%09d", archive.NewBackupID(now), now.Nanosecond()), Archive: a.Name, RanAt: now.UTC(),
		KeepLast: p.KeepLast, KeepWithinSeconds: p.KeepWithin.Seconds(),
		Kept: res.Kept, DeletedBackups: res.DeletedBackups, WALFilesDeleted: res.WALFiles, WALKeptFrom: res.KeepFrom,
	}
	if err := a.PutRetentionRun(ctx, run); err != nil {
		return res, fmt.Errorf("record the retention run (everything above was done): %w", err)
	}
	return res, nil
}

// Preview is what a run with the policy of the archive's last retention
// run would remove now, computed from an inventory already loaded (no
// store call): the status page's "next cut". ok is false when retention
// never ran or the plan cannot be made.
func Preview(inv *catalog.Inventory, last archive.RetentionRun, now time.Time) (plan Plan, ok bool) {
	var backups []Backup
	for _, r := range inv.Backups.Complete {
		start, err := r.Start()
		if err != nil {
			return Plan{}, false
		}
		backups = append(backups, Backup{ID: r.ID, StopTime: r.StopTime, StartTLI: r.StartTLI, StartLSN: start})
	}
	var wal []WALFile
	for _, f := range inv.Files {
		wal = append(wal, WALFile{Name: f.Name, Key: f.Info.Key, Size: f.Info.Size})
	}
	p := Policy{KeepLast: last.KeepLast, KeepWithin: time.Duration(last.KeepWithinSeconds * float64(time.Second))}
	plan, err := MakePlan(backups, nil, wal, inv.SegSize, p, now)
	return plan, err == nil && len(plan.Keep) > 0
}

// crossChecked returns what the plan needs of a completed backup, once
// its record agrees with the backup's own label, its manifest and its
// .backup file (archive.CheckRecord). Any doubt stops the run before
// anything is deleted.
func crossChecked(ctx context.Context, a *archive.Archive, r archive.Record) (Backup, error) {
	own, err := a.CheckRecord(ctx, r)
	if err != nil {
		return Backup{}, fmt.Errorf("%w; nothing is deleted", err)
	}
	return Backup{ID: r.ID, StopTime: r.StopTime, StartTLI: own.StartTLI, StartLSN: own.StartLSN}, nil
}

// nonNil makes JSON print [] for an empty list.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
