package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Files of a backup.
const (
	// RecordFile is the completion record: the backup exists once it is
	// stored, and only an admin can write it.
	RecordFile = "backup.json"
	// ManifestFile is PostgreSQL's backup manifest.
	ManifestFile = "backup_manifest"
	// PartPrefix starts the names of the parts of the backup's tar stream.
	PartPrefix = "base.tar."
)

// Part is one piece of a backup's tar stream.
type Part struct {
	Name       string `json:"name"`
	RawSize    int64  `json:"raw_size"`
	StoredSize int64  `json:"stored_size"`
	SHA256     string `json:"sha256"`
}

// Record is a backup's completion record, backup.json: an envelope like
// every object, bound to its key, and encrypted with the archive's key
// when the archive is encrypted.
type Record struct {
	ID          string `json:"id"`
	Archive     string `json:"archive"`
	Label       string `json:"label"`
	SystemID    string `json:"system_identifier"`
	PGVersion   int    `json:"pg_version_num"`
	SegmentSize int64  `json:"wal_segment_size"`
	StartLSN    string `json:"start_lsn"`
	StopLSN     string `json:"stop_lsn"`
	StartTLI    uint32 `json:"start_timeline"`
	StopTLI     uint32 `json:"stop_timeline"`
	StartWAL    string `json:"start_wal"`
	StopWAL     string `json:"stop_wal"`
	BackupFile  string `json:"backup_history_file"` // the .backup file in the archive ("" for a backup from a standby)
	// BackupFileKey is where that file is when another content took its
	// name first and it was kept beside it (Layout.LabelCopy); "" when it
	// is under its name.
	BackupFileKey string    `json:"backup_history_file_key"`
	FromStandby   bool      `json:"from_standby"` // taken on a standby: its stop position is from its manifest
	StartTime     time.Time `json:"start_time"`
	StopTime      time.Time `json:"stop_time"`
	Files         int       `json:"files"`
	RawSize       int64     `json:"raw_size"`
	StoredSize    int64     `json:"stored_size"`
	Parts         []Part    `json:"parts"` // FormatTar
	// Format is how the files are stored: FormatTar (parts of the tar
	// stream) or FormatBlocks (contents and packs).
	Format string `json:"format"`
	// FormatBlocks: the block size, how many packs the backup's blocks are
	// in, and the raw bytes it found already stored (not uploaded again).
	// StoredSize is then what the backup added: its new packs, contents
	// and manifest.
	BlockSize  int   `json:"block_size"`
	Packs      int   `json:"packs"`
	ReusedSize int64 `json:"reused_size"`
	// ReadLocally: taken by walstored backup --pgdata (pg_backup_start and
	// stop, files read on the database host), with the tablespace_map
	// PostgreSQL gave (its tablespaces are links in the contents) and the
	// pages whose checksum failed, when accepted.
	ReadLocally   bool     `json:"read_locally"`
	TablespaceMap string   `json:"tablespace_map"`
	BadPages      []string `json:"bad_pages"`
	Manifest      bool     `json:"manifest"`
	BackupLabel   string   `json:"backup_label"`
}

// Start is the backup's start position (from its label).
func (r Record) Start() (wal.LSN, error) { return wal.ParseLSN(r.StartLSN) }

// Stop is the backup's stop position.
func (r Record) Stop() (wal.LSN, error) { return wal.ParseLSN(r.StopLSN) }

// OwnLabel parses the backup's own backup_label (from its tar stream).
func (r Record) OwnLabel() (wal.BackupLabel, error) {
	return wal.ParseBackupLabel([]byte(r.BackupLabel))
}

// NewBackupID returns an id for a backup started at t: its UTC time,
// sortable.
func NewBackupID(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// maxRecordSize bounds a completion record.
const maxRecordSize = 64 << 20

// PutRecord stores a backup's completion record: from then on, the
// backup exists.
func (a *Archive) PutRecord(ctx context.Context, r Record) error {
	if err := ValidBackupID(r.ID); err != nil {
		return err
	}
	_, err := a.putJSON(ctx, a.Layout.Backup(r.ID, RecordFile), r)
	return err
}

// LoadBackup reads the completion record of backup id.
func (a *Archive) LoadBackup(ctx context.Context, id string) (Record, error) {
	if err := ValidBackupID(id); err != nil {
		return Record{}, err
	}
	b, _, err := a.ReadAll(ctx, a.Layout.Backup(id, RecordFile), maxRecordSize)
	if err != nil {
		if errors.Is(err, errkind.ErrNotFound) {
			return Record{}, fmt.Errorf("backup %s in archive %s: %w (no completed backup of that id)", id, a.Name, errkind.ErrNotFound)
		}
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: backup %s: completion record: %v", errkind.ErrCorrupt, id, err)
	}
	if r.ID != id || r.Archive != a.Name {
		return Record{}, fmt.Errorf("%w: backup %s: completion record names backup %q of archive %q", errkind.ErrCorrupt, id, r.ID, r.Archive)
	}
	return r, nil
}

// Listing is what the archive holds under backups/.
type Listing struct {
	Complete   []Record            // oldest first (by stop time)
	Incomplete map[string]Progress // backups without a completion record
	// Unreadable are records that could not be read with the keys given
	// (an encrypted archive listed without its key), by id.
	Unreadable map[string]error
}

// Progress describes an incomplete backup: its objects, newest write.
type Progress struct {
	Objects int
	Bytes   int64
	Newest  time.Time
}

// ListBackups reads every completion record of the
func (a *Archive) ListBackups(ctx context.Context) (Listing, error) {
	seen := map[string]*Progress{}
	var ids []string
	err := a.Store.List(ctx, a.Layout.BackupsPrefix(), func(info store.Info) error {
		k, err := ParseKey(info.Key)
		if err != nil || k.Kind != KindBackup {
			return nil
		}
		id, file := k.Backup, k.File
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
		if file == RecordFile {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Incomplete: map[string]Progress{}, Unreadable: map[string]error{}}
	for _, id := range ids {
		r, err := a.LoadBackup(ctx, id)
		if errors.Is(err, errkind.ErrKey) {
			l.Unreadable[id] = err
			delete(seen, id)
			continue
		}
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

// BackupObjects lists the objects of backup id.
func (a *Archive) BackupObjects(ctx context.Context, id string) ([]store.Info, error) {
	if err := ValidBackupID(id); err != nil {
		return nil, err
	}
	var keys []store.Info
	err := a.Store.List(ctx, a.Layout.BackupPrefix(id), func(i store.Info) error { keys = append(keys, i); return nil })
	return keys, err
}

// DeleteBackup removes a backup: its completion record first, so that a
// backup half deleted is never taken for a complete one, then every other
// object. It returns what it removed.
func (a *Archive) DeleteBackup(ctx context.Context, id string) (objects int, bytes int64, err error) {
	keys, err := a.BackupObjects(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	record := a.Layout.Backup(id, RecordFile)
	for _, k := range keys {
		if k.Key == record {
			if err := a.Store.Delete(ctx, record); err != nil && !errors.Is(err, errkind.ErrNotFound) {
				return 0, 0, err
			}
			objects++
			bytes += k.Size
		}
	}
	for _, k := range keys {
		if k.Key == record {
			continue
		}
		if err := a.Store.Delete(ctx, k.Key); err != nil && !errors.Is(err, errkind.ErrNotFound) {
			return objects, bytes, err
		}
		objects++
		bytes += k.Size
	}
	return objects, bytes, nil
}

// CrossCheck compares a backup's own backup_label (from its tar stream,
// written by PostgreSQL into the backup itself) with the .backup file
// found in the archive under its name: every START line must agree.
// Anything a push client could forge into the archive is refused here.
func CrossCheck(own, archived wal.BackupLabel) error {
	switch {
	case own.StartLSN != archived.StartLSN:
		return fmt.Errorf("%w: start %s, the backup's own label says %s", errkind.ErrCorrupt, archived.StartLSN, own.StartLSN)
	case own.Checkpoint != archived.Checkpoint:
		return fmt.Errorf("%w: checkpoint %s, the backup's own label says %s", errkind.ErrCorrupt, archived.Checkpoint, own.Checkpoint)
	case own.StartTLI != archived.StartTLI:
		return fmt.Errorf("%w: start timeline %d, the backup's own label says %d", errkind.ErrCorrupt, archived.StartTLI, own.StartTLI)
	case !own.StartTime.Equal(archived.StartTime):
		return fmt.Errorf("%w: start time %s, the backup's own label says %s", errkind.ErrCorrupt, archived.StartTime, own.StartTime)
	case own.Label != archived.Label:
		return fmt.Errorf("%w: label %q, the backup's own label says %q", errkind.ErrCorrupt, archived.Label, own.Label)
	}
	return nil
}

// ReadBackupFile reads and parses a .backup history file from the
func (a *Archive) ReadBackupFile(ctx context.Context, name wal.Name) (wal.BackupLabel, error) {
	return a.ReadBackupFileAt(ctx, a.Layout.WAL(name), name)
}

// ReadBackupFileAt is ReadBackupFile of the copy of .backup file name
// kept at key (Layout.LabelCopy).
func (a *Archive) ReadBackupFileAt(ctx context.Context, key string, name wal.Name) (wal.BackupLabel, error) {
	_, rc, err := a.Open(ctx, key)
	if err != nil {
		return wal.BackupLabel{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, wal.MaxBackupLabelSize+1))
	if err != nil {
		return wal.BackupLabel{}, err
	}
	l, err := wal.ParseBackupLabel(b)
	if err == nil {
		err = wal.CheckBackupFile(name, l)
	}
	if err == nil && l.StopLSN == 0 {
		err = fmt.Errorf("%w: no STOP WAL LOCATION", errkind.ErrInvalid)
	}
	if err != nil {
		return l, fmt.Errorf("backup history file %s in archive %s: %w", name, a.Name, err)
	}
	return l, nil
}

// CheckRecord cross-checks a backup's completion record (admin-written)
// with the backup's own label (from its tar stream), its manifest, and
// the .backup file in the archive (which came through archive_command:
// anything a push client could have forged is checked against the rest).
// It returns the backup's own label. Retention and restore act on a
// backup only once this holds.
func (a *Archive) CheckRecord(ctx context.Context, r Record) (wal.BackupLabel, error) {
	fail := func(format string, args ...any) (wal.BackupLabel, error) {
		return wal.BackupLabel{}, fmt.Errorf("backup %s: "+format, append([]any{r.ID}, args...)...)
	}
	own, err := r.OwnLabel()
	if err != nil {
		return fail("its own backup_label does not parse: %w", err)
	}
	start, err := r.Start()
	if err != nil || own.StartLSN != start || own.StartTLI != r.StartTLI {
		return fail("%w: its record says it starts at %s on timeline %d, its own label at %s on %d", errkind.ErrCorrupt, r.StartLSN, r.StartTLI, own.StartLSN, own.StartTLI)
	}
	if r.Manifest {
		if err := a.checkManifest(ctx, r, own); err != nil {
			return fail("%w", err)
		}
	}
	if r.BackupFile != "" {
		name, err := wal.ParseName(r.BackupFile)
		if err != nil {
			return fail("%w", err)
		}
		key := a.Layout.WAL(name)
		if r.BackupFileKey != "" {
			if k, err := ParseKey(r.BackupFileKey); err != nil || k.Kind != KindLabelCopy || k.WAL != name || k.Archive != a.Name {
				return fail("%w: its .backup file key %q is not a copy of %s", errkind.ErrCorrupt, r.BackupFileKey, name)
			}
			key = r.BackupFileKey
		}
		l, err := a.ReadBackupFileAt(ctx, key, name)
		if err != nil {
			return fail("cannot read its start from %s: %w", key, err)
		}
		if err := CrossCheck(own, l); err != nil {
			return fail("%s is not its label: %w", name, err)
		}
	}
	return own, nil
}

// checkManifest compares the WAL range PostgreSQL wrote into the backup's
// manifest with the backup's label.
func (a *Archive) checkManifest(ctx context.Context, r Record, own wal.BackupLabel) error {
	b, _, err := a.ReadAll(ctx, a.Layout.Backup(r.ID, ManifestFile), 1<<30)
	if err != nil {
		return fmt.Errorf("its manifest: %w", err)
	}
	ranges, err := ManifestWALRanges(b)
	if err != nil {
		return fmt.Errorf("%w: its manifest: %v", errkind.ErrCorrupt, err)
	}
	first := ranges[0]
	if first.Start != own.StartLSN || first.Timeline != own.StartTLI {
		return fmt.Errorf("%w: its manifest starts at %s on timeline %d, its label at %s on %d", errkind.ErrCorrupt, first.Start, first.Timeline, own.StartLSN, own.StartTLI)
	}
	// A backup from a standby took its stop from the manifest: it must
	// still be there.
	if last := ranges[len(ranges)-1]; r.FromStandby && (last.End.String() != r.StopLSN || last.Timeline != r.StopTLI) {
		return fmt.Errorf("%w: its manifest ends at %s on timeline %d, its record at %s on %d", errkind.ErrCorrupt, last.End, last.Timeline, r.StopLSN, r.StopTLI)
	}
	return nil
}

// WALRange is one of the WAL ranges of a backup manifest: the WAL a
// restore of the backup must replay, per timeline.
type WALRange struct {
	Timeline   uint32
	Start, End wal.LSN
}

// ManifestWALRanges reads the WAL ranges of a PostgreSQL backup manifest
// (at least one, each well-formed).
func ManifestWALRanges(manifest []byte) ([]WALRange, error) {
	var m struct {
		WALRanges []struct {
			Timeline uint32 `json:"Timeline"`
			Start    string `json:"Start-LSN"`
			End      string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil || len(m.WALRanges) == 0 {
		return nil, fmt.Errorf("%w: no WAL range in the backup manifest", errkind.ErrInvalid)
	}
	out := make([]WALRange, len(m.WALRanges))
	for i, r := range m.WALRanges {
		start, err1 := wal.ParseLSN(r.Start)
		end, err2 := wal.ParseLSN(r.End)
		if err1 != nil || err2 != nil || end < start {
			return nil, fmt.Errorf("%w: WAL range %q to %q on timeline %d in the backup manifest", errkind.ErrInvalid, r.Start, r.End, r.Timeline)
		}
		out[i] = WALRange{Timeline: r.Timeline, Start: start, End: end}
	}
	return out, nil
}
