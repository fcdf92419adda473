package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/wal"
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
	WALFiles          int      `json:"wal_files_deleted"`
	WALBytes          int64    `json:"wal_bytes_deleted"`
	WALFirst          string   `json:"wal_first_deleted,omitempty"`
	WALLast           string   `json:"wal_last_deleted,omitempty"`
	KeepFrom          string   `json:"wal_kept_from,omitempty"`
}

// Run plans retention for the archive with policy p and, unless dryRun,
// carries it out: expired backups first (each completion record before its
// parts), then incomplete ones, then the WAL no kept backup needs, oldest
// first. Any doubt about a kept backup's start stops the run before
// anything is deleted.
func Run(ctx context.Context, a *archive.Archive, p Policy, now time.Time, dryRun bool) (Result, error) {
	res := Result{Archive: a.Name, DryRun: dryRun}
	inv, err := catalog.Load(ctx, a)
	if err != nil {
		return res, err
	}
	var backups []Backup
	for _, r := range inv.Backups.Complete {
		b, err := fromLabel(ctx, a, r)
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
	res.Kept, res.DeletedBackups, res.DeletedIncomplete = plan.Keep, plan.Delete, plan.DeleteIncomplete
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
	if dryRun {
		return res, nil
	}
	for _, id := range append(append([]string(nil), plan.Delete...), plan.DeleteIncomplete...) {
		n, b, err := a.DeleteBackup(ctx, id)
		res.BackupObjects += n
		res.BackupBytes += b
		if err != nil {
			return res, fmt.Errorf("delete backup %s: %w", id, err)
		}
	}
	for _, f := range plan.DeleteWAL {
		if err := a.Store.Delete(ctx, f.Key); err != nil && !errors.Is(err, archive.ErrNotFound) {
			return res, fmt.Errorf("delete %s: %w", f.Name, err)
		}
	}
	return res, nil
}

// fromLabel reads a kept backup's start from its .backup file in the
// archive and checks it against the completion record.
func fromLabel(ctx context.Context, a *archive.Archive, r archive.Record) (Backup, error) {
	name, err := wal.ParseName(r.BackupFile)
	if err != nil {
		return Backup{}, fmt.Errorf("backup %s: %w", r.ID, err)
	}
	l, err := backupset.ReadBackupFile(ctx, a, name)
	if err != nil {
		return Backup{}, fmt.Errorf("backup %s: cannot read its start from %s, so nothing is deleted: %w", r.ID, name, err)
	}
	if l.StartLSN.String() != r.StartLSN || l.StartTLI != r.StartTLI {
		return Backup{}, fmt.Errorf("%w: backup %s: %s says it starts at %s on timeline %d, its record says %s on %d; nothing is deleted",
			archive.ErrCorrupt, r.ID, name, l.StartLSN, l.StartTLI, r.StartLSN, r.StartTLI)
	}
	return Backup{ID: r.ID, StopTime: r.StopTime, StartTLI: l.StartTLI, StartLSN: l.StartLSN}, nil
}
