package archive

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Backups in blocks (FormatBlocks) store the files of a data directory as
// content-addressed blocks, packed many to an object and shared by every
// backup of the archive that has the same content (backupset's package doc
// says how files are cut into blocks and why):
//
//	<archive>/packs/<sha256>              a pack: blocks back to back, its
//	                                      name the SHA-256 of that raw content
//	<archive>/backups/<id>/contents       every entry of the backup, each
//	                                      file with its blocks (pack, offset,
//	                                      length, SHA-256)
//	<archive>/backups/<id>/progress.NNNNN one per pack stored while the
//	                                      backup runs: the pack's blocks and
//	                                      the packs of earlier backups it
//	                                      used since the previous one
//
// A pack is written once and never changes (its name is its content). A
// backup is complete when its completion record is stored; its contents
// say everything a restore needs. The progress records let a backup that
// was interrupted be taken again without uploading what it had stored,
// and keep a running backup's packs from the sweep.
//
// Retention deletes backups, then sweeps: a pack that no completed
// backup's contents and no incomplete backup's progress names, and that is
// older than PackGrace, is deleted. A backup never depends on another
// backup, only on packs, so deleting one never breaks another.

// Backup formats.
const (
	// FormatTar (the empty string: older records) is PostgreSQL's tar
	// stream cut into parts.
	FormatTar = ""
	// FormatBlocks is files cut into content-addressed blocks in packs.
	FormatBlocks = "blocks"
)

// Files of a backup in blocks.
const (
	ContentsFile   = "contents"
	ProgressPrefix = "progress."
)

// PackGrace is how old a pack that nothing names must be before a sweep
// deletes it: a backup stores a pack before the progress record that
// names it, and clocks of hosts and stores differ by a little.
const PackGrace = time.Minute

// Contents is a backup's list of entries.
type Contents struct {
	BlockSize int      `json:"block_size"`
	Packs     []string `json:"packs"` // the packs its blocks are in; Block.Pack indexes it
	Entries   []Entry  `json:"entries"`
}

// Entry is a directory, a regular file or a tablespace of the backup, in
// the order it was read.
type Entry struct {
	Path   string  `json:"path"`
	Dir    bool    `json:"dir,omitempty"`
	Link   string  `json:"link,omitempty"` // pg_tblspc/<oid>: the tablespace's location
	Size   int64   `json:"size,omitempty"`
	Blocks []Block `json:"blocks,omitempty"` // a file's blocks, in order, covering Size
	// Read locally (walstored backup --pgdata): the file as it was found,
	// so that a later backup can know it unchanged without reading it
	// (size, modification and change times and inode all the same, and
	// modified well before this backup began), and its CRC-32C for
	// PostgreSQL's backup_manifest.
	MTime int64   `json:"mtime_ns,omitempty"`
	CTime int64   `json:"ctime_ns,omitempty"`
	Inode uint64  `json:"ino,omitempty"`
	CRC   *uint32 `json:"crc32c,omitempty"`
	// Seal is an HMAC-SHA256 of the above and the blocks' SHA-256s under
	// a key only the database host holds: a later local backup takes the
	// file unread only when it verifies (backupset/take, seal.go).
	Seal string `json:"seal,omitempty"`
}

// Block is one block of a file: where it is and its SHA-256.
type Block struct {
	Pack   int    `json:"p"`
	Off    int64  `json:"o"` // in the pack's raw content
	Len    int    `json:"n"`
	SHA256 string `json:"h"`
}

// PackProgress is a progress record of a running backup.
type PackProgress struct {
	Pack   string      `json:"pack,omitempty"` // the pack just stored
	Blocks []PackBlock `json:"blocks,omitempty"`
	// Reused are packs of earlier backups this one uses, named since its
	// previous progress record.
	Reused []string `json:"reused_packs,omitempty"`
}

// PackBlock is a block of a pack.
type PackBlock struct {
	SHA256 string `json:"h"`
	Off    int64  `json:"o"`
	Len    int    `json:"n"`
}

var tablespaceLink = regexp.MustCompile(`^pg_tblspc/[0-9]+$`)

// ValidPackID checks a pack id: 64 lowercase hex digits.
func ValidPackID(id string) error {
	if len(id) != 64 || strings.ToLower(id) != id {
		return fmt.Errorf("%w: pack id %q: want 64 lowercase hex digits", errkind.ErrInvalid, errkind.Quote(id))
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("%w: pack id %q: want 64 lowercase hex digits", errkind.ErrInvalid, errkind.Quote(id))
	}
	return nil
}

// Check checks that the contents are well-formed: every path relative and
// inside the data directory, every block in a listed pack, every file
// covered by its blocks.
func (c Contents) Check() error {
	for _, p := range c.Packs {
		if err := ValidPackID(p); err != nil {
			return err
		}
	}
	for _, e := range c.Entries {
		if e.Path == "" || strings.HasPrefix(e.Path, "/") || e.Path == ".." || strings.HasPrefix(e.Path, "../") || strings.Contains(e.Path, "/../") {
			return fmt.Errorf("%w: entry %q escapes the data directory", errkind.ErrCorrupt, errkind.Quote(e.Path))
		}
		if e.Link != "" && (!tablespaceLink.MatchString(e.Path) || !strings.HasPrefix(e.Link, "/") || e.Dir || len(e.Blocks) > 0) {
			return fmt.Errorf("%w: entry %q: a tablespace link must be pg_tblspc/<oid> to an absolute path", errkind.ErrCorrupt, errkind.Quote(e.Path))
		}
		var off int64
		for _, b := range e.Blocks {
			if b.Pack < 0 || b.Pack >= len(c.Packs) || b.Len <= 0 || b.Off < 0 {
				return fmt.Errorf("%w: %s: a block names pack %d of %d", errkind.ErrCorrupt, e.Path, b.Pack, len(c.Packs))
			}
			off += int64(b.Len)
		}
		if off != e.Size {
			return fmt.Errorf("%w: %s: its blocks hold %d bytes, the file has %d", errkind.ErrCorrupt, e.Path, off, e.Size)
		}
	}
	return nil
}

// maxContentsSize bounds a backup's contents (about 15 MB per TiB of
// data at 128 KiB blocks, after compression twice that raw).
const maxContentsSize = 4 << 30

// PutBackupJSON stores v as file of backup id (contents, progress).
func (a *Archive) PutBackupJSON(ctx context.Context, id, file string, v any) (int64, error) {
	n, err := a.putEncodedJSON(ctx, a.Layout.Backup(id, file), v, true)
	if err != nil {
		return 0, fmt.Errorf("store %s of backup %s: %w", file, id, err)
	}
	return n, nil
}

// ReadContents reads and checks the contents of backup id.
func (a *Archive) ReadContents(ctx context.Context, id string) (Contents, error) {
	var c Contents
	b, _, err := a.ReadAll(ctx, a.Layout.Backup(id, ContentsFile), maxContentsSize)
	if err != nil {
		return c, fmt.Errorf("backup %s: its contents: %w", id, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: backup %s: its contents: %v", errkind.ErrCorrupt, id, err)
	}
	if err := c.Check(); err != nil {
		return c, fmt.Errorf("backup %s: %w", id, err)
	}
	return c, nil
}

// ReadProgress reads the progress records of backup id, in order.
func (a *Archive) ReadProgress(ctx context.Context, id string) ([]PackProgress, error) {
	objs, err := a.BackupObjects(ctx, id)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, o := range objs {
		if k, err := ParseKey(o.Key); err == nil && strings.HasPrefix(k.File, ProgressPrefix) {
			keys = append(keys, o.Key)
		}
	}
	sort.Strings(keys)
	var out []PackProgress
	for _, key := range keys {
		b, _, err := a.ReadAll(ctx, key, 64<<20)
		if errors.Is(err, errkind.ErrNotFound) {
			continue // deleted meanwhile (retention)
		}
		if err != nil {
			return nil, fmt.Errorf("backup %s: %s: %w", id, key, err)
		}
		var p PackProgress
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("%w: backup %s: %s: %v", errkind.ErrCorrupt, id, key, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// PacksInUse are the packs that a completed backup's contents or an
// incomplete backup's progress names.
func (a *Archive) PacksInUse(ctx context.Context) (map[string]bool, error) {
	l, err := a.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(l.Unreadable); n > 0 {
		return nil, fmt.Errorf("%w: %d completion records cannot be read without the archive's key", errkind.ErrKey, n)
	}
	used := map[string]bool{}
	for _, r := range l.Complete {
		if r.Format != FormatBlocks {
			continue
		}
		c, err := a.ReadContents(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		for _, p := range c.Packs {
			used[p] = true
		}
	}
	for id := range l.Incomplete {
		ps, err := a.ReadProgress(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if p.Pack != "" {
				used[p.Pack] = true
			}
			for _, r := range p.Reused {
				used[r] = true
			}
		}
	}
	return used, nil
}

// SweepPacks deletes the packs no backup uses (PacksInUse) that are older
// than PackGrace, and returns what it deleted (or, with dryRun, would).
// Any doubt (a contents or progress record that cannot be read) deletes
// nothing.
func (a *Archive) SweepPacks(ctx context.Context, dryRun bool) (objects int, bytes int64, err error) {
	cutoff := time.Now().Add(-PackGrace)
	used, err := a.PacksInUse(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("packs in use: %w; no pack is deleted", err)
	}
	var doomed []store.Info
	err = a.Store.List(ctx, a.Layout.PacksPrefix(), func(info store.Info) error {
		k, err := ParseKey(info.Key)
		if err != nil || k.Kind != KindPack || used[k.Pack] || !info.ModTime.Before(cutoff) {
			return nil
		}
		doomed = append(doomed, info)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, info := range doomed {
		if !dryRun {
			if err := a.Store.Delete(ctx, info.Key); err != nil && !errors.Is(err, errkind.ErrNotFound) {
				return objects, bytes, err
			}
		}
		objects++
		bytes += info.Size
	}
	return objects, bytes, nil
}

// PackStoredSizes returns the stored size of every pack of the archive.
func (a *Archive) PackStoredSizes(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := a.Store.List(ctx, a.Layout.PacksPrefix(), func(info store.Info) error {
		if k, err := ParseKey(info.Key); err == nil && k.Kind == KindPack {
			out[k.Pack] = info.Size
		}
		return nil
	})
	return out, err
}
