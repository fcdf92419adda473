package backupset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/walstore/walstore/archive"
)

const (
	backupsDir   = "backups/"
	recordName   = "backup.json"
	manifestName = "backup_manifest"
	partPrefix   = "base.tar."
)

// Part is one piece of a backup's tar stream.
type Part struct {
	Name       string `json:"name"`
	RawSize    int64  `json:"raw_size"`
	StoredSize int64  `json:"stored_size"`
	SHA256     string `json:"sha256"`
}

// Record is a backup's completion record, backup.json.
type Record struct {
	ID          string    `json:"id"`
	Archive     string    `json:"archive"`
	Label       string    `json:"label"`
	SystemID    string    `json:"system_identifier"`
	PGVersion   int       `json:"pg_version_num"`
	SegmentSize int64     `json:"wal_segment_size"`
	StartLSN    string    `json:"start_lsn"`
	StopLSN     string    `json:"stop_lsn"`
	StartTLI    uint32    `json:"start_timeline"`
	StopTLI     uint32    `json:"stop_timeline"`
	StartWAL    string    `json:"start_wal"`
	StopWAL     string    `json:"stop_wal"`
	BackupFile  string    `json:"backup_history_file"` // the .backup file in the archive
	StartTime   time.Time `json:"start_time"`
	StopTime    time.Time `json:"stop_time"`
	Files       int       `json:"files"`
	RawSize     int64     `json:"raw_size"`
	StoredSize  int64     `json:"stored_size"`
	Parts       []Part    `json:"parts"`
	Manifest    bool      `json:"manifest"`
	BackupLabel string    `json:"backup_label"`
}

// Start is the backup's start position (from its label).
func (r Record) Start() (archive.LSN, error) { return archive.ParseLSN(r.StartLSN) }

// Stop is the backup's stop position.
func (r Record) Stop() (archive.LSN, error) { return archive.ParseLSN(r.StopLSN) }

// Key returns the store key of a file of backup id.
func Key(a *archive.Archive, id, file string) string {
	return a.Key(backupsDir + id + "/" + file)
}

// validID checks a backup id (also used as a key component).
func validID(id string) error {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "/") || archive.ValidKey(id) != nil {
		return fmt.Errorf("%w: backup id %q", archive.ErrInvalid, id)
	}
	return nil
}

// NewID returns an id for a backup started at t: its UTC time, sortable.
func NewID(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// Load reads the completion record of backup id.
func Load(ctx context.Context, a *archive.Archive, id string) (Record, error) {
	if err := validID(id); err != nil {
		return Record{}, err
	}
	_, rc, err := a.Open(ctx, Key(a, id, recordName))
	if err != nil {
		if errors.Is(err, archive.ErrNotFound) {
			return Record{}, fmt.Errorf("backup %s in archive %s: %w (no completed backup of that id)", id, a.Name, archive.ErrNotFound)
		}
		return Record{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return Record{}, fmt.Errorf("backup %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: backup %s: completion record: %v", archive.ErrCorrupt, id, err)
	}
	if r.ID != id {
		return Record{}, fmt.Errorf("%w: backup %s: completion record names %q", archive.ErrCorrupt, id, r.ID)
	}
	return r, nil
}

// Listing is what the archive holds under backups/.
type Listing struct {
	Complete   []Record            // oldest first (by stop time)
	Incomplete map[string]Progress // backups without a completion record
}

// Progress describes an incomplete backup: its objects, newest write.
type Progress struct {
	Objects int
	Bytes   int64
	Newest  time.Time
}

// List reads every completion record of the archive.
func List(ctx context.Context, a *archive.Archive) (Listing, error) {
	seen := map[string]*Progress{}
	var ids []string
	err := a.Store.List(ctx, a.Key(backupsDir), func(info archive.Info) error {
		rest := strings.TrimPrefix(info.Key, a.Key(backupsDir))
		id, file, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		p := seen[id]
		if p == nil {
			p = &Progress{}
			seen[id] = p
		}
		p.Objects++
		p.Bytes += info.Size
		if info.ModTime.After(p.Newest) {
			p.Newest = info.ModTime
		}
		if file == recordName {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Incomplete: map[string]Progress{}}
	for _, id := range ids {
		r, err := Load(ctx, a, id)
		if err != nil {
			return Listing{}, err
		}
		l.Complete = append(l.Complete, r)
		delete(seen, id)
	}
	for id, p := range seen {
		l.Incomplete[id] = *p
	}
	sort.Slice(l.Complete, func(i, j int) bool {
		if !l.Complete[i].StopTime.Equal(l.Complete[j].StopTime) {
			return l.Complete[i].StopTime.Before(l.Complete[j].StopTime)
		}
		return l.Complete[i].ID < l.Complete[j].ID
	})
	return l, nil
}

// Delete removes a backup: its completion record first, so that a backup
// half deleted is never taken for a complete one, then every other object.
func Delete(ctx context.Context, a *archive.Archive, id string) (objects int, bytes int64, err error) {
	if err := validID(id); err != nil {
		return 0, 0, err
	}
	if err := a.Store.Delete(ctx, Key(a, id, recordName)); err != nil && !errors.Is(err, archive.ErrNotFound) {
		return 0, 0, err
	}
	var keys []archive.Info
	if err := a.Store.List(ctx, a.Key(backupsDir+id+"/"), func(i archive.Info) error { keys = append(keys, i); return nil }); err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		if err := a.Store.Delete(ctx, k.Key); err != nil && !errors.Is(err, archive.ErrNotFound) {
			return objects, bytes, err
		}
		objects++
		bytes += k.Size
	}
	return objects + 1, bytes, nil
}
