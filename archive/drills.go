package archive

import (
	"context"
	"time"

	"github.com/walstore/walstore/wal"
)

// Drill is the record of a restore drill: a backup restored into a scratch
// directory and recovered by PostgreSQL to the end of the archive (see
// drill.Run in backupset/drill). Records are admin-written, one per drill.
type Drill struct {
	ID              string    `json:"id"`
	Archive         string    `json:"archive"`
	Backup          string    `json:"backup"`
	Started         time.Time `json:"started"`
	Seconds         float64   `json:"duration_seconds"`
	RestoreSeconds  float64   `json:"restore_seconds"`
	RecoverySeconds float64   `json:"recovery_seconds"`
	Timeline        uint32    `json:"timeline"`
	// Expected is the newest segment the archive holds on the recovery
	// path; recovery must replay into it ("" when the drill did not get
	// that far).
	Expected   string  `json:"expected_segment"`
	ReplayedTo wal.LSN `json:"replayed_to"`
	WALBytes   int64   `json:"wal_bytes_replayed"`
	OK         bool    `json:"ok"`
	Error      string  `json:"error"`
}

// PutDrill records a drill.
func (a *Archive) PutDrill(ctx context.Context, d Drill) error {
	if err := ValidBackupID(d.ID); err != nil {
		return err
	}
	_, err := a.putJSON(ctx, a.Layout.Drill(d.ID), d)
	return err
}
