package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Drill is the record of a restore drill: a backup restored into a scratch
// directory and recovered by PostgreSQL to the end of the archive (see
// backupset.Drill). Records are admin-written, one per drill.
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
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	key := a.Layout.Drill(d.ID)
	obj, err := a.Encoder().EncodeBytes(b, key)
	if err != nil {
		return err
	}
	_, err = PutObject(ctx, a.Store, key, obj)
	return err
}

// LastDrill returns the newest drill's record; ErrNotFound if none ran.
func (a *Archive) LastDrill(ctx context.Context) (Drill, error) {
	last := ""
	err := a.Store.List(ctx, a.Layout.DrillsPrefix(), func(i store.Info) error {
		last = i.Key // keys sort by time
		return nil
	})
	if err != nil {
		return Drill{}, err
	}
	if last == "" {
		return Drill{}, fmt.Errorf("archive %s: no drill ran yet: %w", a.Name, ErrNotFound)
	}
	b, _, err := a.ReadAll(ctx, last, 1<<20)
	if err != nil {
		return Drill{}, err
	}
	var d Drill
	if err := json.Unmarshal(b, &d); err != nil {
		return Drill{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, last, err)
	}
	return d, nil
}
