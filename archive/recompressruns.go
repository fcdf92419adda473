package archive

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/walstore/walstore/store"
)

// RecompressRun is the record a recompression pass leaves in each archive
// it made smaller (walstored recompress, not a dry run): what it did, and
// what every pass over the archive saved so far.
type RecompressRun struct {
	ID           string    `json:"id"`
	Archive      string    `json:"archive"`
	RanAt        time.Time `json:"ran_at"`
	Recompressed int       `json:"objects_recompressed"`
	BytesBefore  int64     `json:"bytes_before"`
	BytesAfter   int64     `json:"bytes_after"`
	RawBytes     int64     `json:"raw_bytes"`
	Seconds      float64   `json:"seconds"`
	// SavedTotal is the stored bytes every pass over the archive saved,
	// this one's included.
	SavedTotal int64 `json:"saved_total_bytes"`
}

// KeepRecompressRuns is how many records of recompression passes are kept.
const KeepRecompressRuns = 10

// PutRecompressRun records a pass (its SavedTotal carried on from the
// newest record) and removes all but the newest KeepRecompressRuns.
func (a *Archive) PutRecompressRun(ctx context.Context, r RecompressRun) error {
	if err := ValidBackupID(r.ID); err != nil {
		return err
	}
	keys, err := a.listKeys(ctx, a.Layout.RecompressPrefix())
	if err != nil {
		return err
	}
	r.SavedTotal = r.BytesBefore - r.BytesAfter
	if len(keys) > 0 {
		if last, err := readRecord[RecompressRun](ctx, a, keys[len(keys)-1]); err == nil {
			r.SavedTotal += last.SavedTotal
		}
	}
	if _, err := a.putJSON(ctx, a.Layout.RecompressRun(r.ID), r); err != nil {
		return err
	}
	return a.keepNewest(ctx, a.Layout.RecompressPrefix(), KeepRecompressRuns)
}

// LastRecords reads the newest drill, retention run and recompression
// pass of the archive with one listing of its meta/ (nil: none, or not
// readable: the error says why).
func (a *Archive) LastRecords(ctx context.Context) (*Drill, *RetentionRun, *RecompressRun, error) {
	var drill, ret, rec string
	err := a.Store.List(ctx, a.Layout.MetaPrefix(), func(i store.Info) error {
		switch { // keys sort by time within each prefix
		case strings.HasPrefix(i.Key, a.Layout.DrillsPrefix()):
			drill = i.Key
		case strings.HasPrefix(i.Key, a.Layout.RetentionPrefix()):
			ret = i.Key
		case strings.HasPrefix(i.Key, a.Layout.RecompressPrefix()):
			rec = i.Key
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	var d *Drill
	var r *RetentionRun
	var c *RecompressRun
	var errs []error
	if drill != "" {
		d, err = readRecordPtr[Drill](ctx, a, drill)
		errs = append(errs, err)
	}
	if ret != "" {
		r, err = readRecordPtr[RetentionRun](ctx, a, ret)
		errs = append(errs, err)
	}
	if rec != "" {
		c, err = readRecordPtr[RecompressRun](ctx, a, rec)
		errs = append(errs, err)
	}
	return d, r, c, errors.Join(errs...)
}
