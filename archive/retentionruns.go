package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/walstore/walstore/base/errkind"
)

// RetentionRun is the record a retention run leaves (not a dry run): the
// policy it applied and what it removed. The status page draws the next
// cut from the newest one's policy; the records are what a DBA reads to
// know why a backup is gone.
type RetentionRun struct {
	ID                string    `json:"id"`
	Archive           string    `json:"archive"`
	RanAt             time.Time `json:"ran_at"`
	KeepLast          int       `json:"keep_last"`
	KeepWithinSeconds float64   `json:"keep_within_seconds"`
	Kept              []string  `json:"kept_backups"`
	DeletedBackups    []string  `json:"deleted_backups"`
	WALFilesDeleted   int       `json:"wal_files_deleted"`
	WALKeptFrom       string    `json:"wal_kept_from"`
}

// KeepRetentionRuns is how many records of retention runs are kept.
const KeepRetentionRuns = 10

// PutRetentionRun records a retention run and removes all but the
// newest KeepRetentionRuns records.
func (a *Archive) PutRetentionRun(ctx context.Context, r RetentionRun) error {
	if err := ValidBackupID(r.ID); err != nil {
		return err
	}
	if _, err := a.putJSON(ctx, a.Layout.RetentionRun(r.ID), r); err != nil {
		return err
	}
	return a.keepNewest(ctx, a.Layout.RetentionPrefix(), KeepRetentionRuns)
}

// LastRetentionRun returns the newest retention run's record;
// ErrNotFound if none ran.
func (a *Archive) LastRetentionRun(ctx context.Context) (RetentionRun, error) {
	keys, err := a.listKeys(ctx, a.Layout.RetentionPrefix())
	if err != nil {
		return RetentionRun{}, err
	}
	if len(keys) == 0 {
		return RetentionRun{}, fmt.Errorf("archive %s: no retention ran yet: %w", a.Name, errkind.ErrNotFound)
	}
	return readRecord[RetentionRun](ctx, a, keys[len(keys)-1])
}
