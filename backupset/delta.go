package backupset

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
)

// Delta restore (walfetch restore --delta) lays a backup over an existing
// data directory of the same cluster (a diverged old primary, a stale
// standby) and writes only what differs. A backup in blocks is compared
// block by block: each block of an existing file is hashed and compared
// with the SHA-256 the backup's contents list; only the blocks that
// differ are fetched and written, in place; only the frames of their
// packs that hold them are read (see unpackBlocks), so a delta restore
// over a few changed blocks reads little more than those blocks. An older backup
// (a tar stream) is compared file by file: a file whose size and checksum
// match the backup's manifest (PostgreSQL's: CRC-32C by default, a 32-bit
// check that a same-size file with other content passes once in 4
// billion; SHA-256 when the manifest has it) is left as it is; any other is written to a
// temporary file and renamed over the old one; files the backup does not
// have are removed, pg_wal emptied (its WAL may be a diverged timeline's).
// The backup's parts are still fetched and decoded in full (the tar
// stream is one piece); what is saved is the writing.
//
// The directory must hold a stopped cluster (no postmaster.pid) whose
// pg_control names the system the archive is bound to: a delta restore
// never touches another cluster's files. A tablespace is compared in
// place where the directory's own pg_tblspc link points (at its mapped
// place, or where the backup says), or restored into an empty place;
// any other non-empty place is refused. A failed delta restore leaves
// the directory partly restored (never emptied): run it again.

// deltaState is what a delta restore learns and does.
type deltaState struct {
	sums    map[string]manifestFile // by path, from the backup's manifest
	seen    map[string]bool         // paths the backup has
	links   map[string]string       // its tablespaces: pg_tblspc/OID to where they are
	Kept    int                     `json:"files_kept"`
	Written int                     `json:"files_written"`
	Bytes   int64                   `json:"bytes_written"`
	Removed int                     `json:"files_removed"`
	// Packs the blocks to write came from, how many of them were read in
	// part (only the frames holding those blocks), and the bytes read.
	Packs       int   `json:"packs"`
	PacksInPart int   `json:"packs_read_in_part"`
	Fetched     int64 `json:"bytes_fetched"`
}

type manifestFile struct {
	Size     int64  `json:"Size"`
	Algo     string `json:"Checksum-Algorithm"`
	Checksum string `json:"Checksum"`
}

// checkDeltaDir checks that dir holds a stopped cluster of the system the
// archive and the backup belong to.
func checkDeltaDir(ctx context.Context, dir string, a *archive.Archive, rec archive.Record) error {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		return fmt.Errorf("%w: --delta: %s is not a PostgreSQL data directory (no PG_VERSION): restore into an empty directory without --delta", errkind.ErrInvalid, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%w: --delta: %s has a postmaster.pid: stop PostgreSQL first (pg_ctl -D %s stop)", errkind.ErrInvalid, dir, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil || len(b) < 8 {
		return fmt.Errorf("%w: --delta: %s has no readable global/pg_control: %v", errkind.ErrInvalid, dir, err)
	}
	// The system identifier is pg_control's first field.
	sysid := binary.LittleEndian.Uint64(b)
	if fmt.Sprint(sysid) != rec.SystemID {
		return fmt.Errorf("%w: --delta: %s holds system %d, backup %s is of system %s: never restore over another cluster", errkind.ErrWrongSystem, dir, sysid, rec.ID, rec.SystemID)
	}
	return nil
}

// newDelta reads the backup's manifest for the files' sizes and checksums.
func newDelta(ctx context.Context, a *archive.Archive, rec archive.Record) (*deltaState, error) {
	if rec.Format == archive.FormatBlocks {
		// Compared block by block with the backup's contents.
		return &deltaState{seen: map[string]bool{}, links: map[string]string{}}, nil
	}
	if !rec.Manifest {
		return nil, fmt.Errorf("%w: --delta: backup %s has no manifest to compare files with", errkind.ErrInvalid, rec.ID)
	}
	b, _, err := a.ReadAll(ctx, a.Layout.Backup(rec.ID, archive.ManifestFile), 1<<30)
	if err != nil {
		return nil, fmt.Errorf("--delta: the backup's manifest: %w", err)
	}
	var m struct {
		Files []struct {
			Path string `json:"Path"`
			manifestFile
		} `json:"Files"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: --delta: the backup's manifest: %v", errkind.ErrCorrupt, err)
	}
	d := &deltaState{sums: map[string]manifestFile{}, seen: map[string]bool{}, links: map[string]string{}}
	for _, f := range m.Files {
		d.sums[filepath.FromSlash(f.Path)] = f.manifestFile
	}
	return d, nil
}

// same reports whether the file at path already holds what the manifest
// says the backup's file rel holds.
func (d *deltaState) same(path, rel string, size int64) bool {
	m, ok := d.sums[rel]
	if !ok || m.Size != size || m.Algo != "CRC32C" && m.Algo != "SHA256" {
		return false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if m.Algo == "SHA256" {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return false
		}
		return hex.EncodeToString(h.Sum(nil)) == strings.ToLower(m.Checksum)
	}
	h := crc32.New(Castagnoli)
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return PGCRC32C(h.Sum32()) == strings.ToLower(m.Checksum)
}

// write puts one file of the backup in place: left as is when it already
// matches, else written to a temporary file and renamed over the old one.
func (d *deltaState) write(dst, rel string, size int64, r io.Reader) error {
	d.seen[rel] = true
	if d.same(dst, rel, size) {
		d.Kept++
		_, err := io.Copy(io.Discard, r)
		return err
	}
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".delta-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	d.Written++
	d.Bytes += n
	return nil
}

// removeStrays removes the files the backup does not have (pg_wal's
// included: the WAL there may be a diverged timeline's) and links, in
// dir and in the backup's tablespaces (links: pg_tblspc/OID to where the
// tablespace was restored), whose files are named through their links.
func (d *deltaState) removeStrays(dir string) error {
	if err := d.removeStraysUnder(dir, ""); err != nil {
		return err
	}
	for rel, target := range d.links {
		if err := d.removeStraysUnder(target, rel); err != nil {
			return err
		}
	}
	return nil
}

// removeStraysUnder removes what the backup does not have under root,
// whose files the backup names under prefix.
func (d *deltaState) removeStraysUnder(root, prefix string) error {
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.Join(prefix, rel)
		if d.seen[rel] {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		d.Removed++
		return nil
	})
}
