// Package push is walpush: it checks a WAL file PostgreSQL hands to
// archive_command, packs it into an envelope (hashing and compressing in one
// read), and stores it write-once in an archive, retrying transient
// failures within a deadline.
//
// With Jobs > 1 a detached pusher (pusher.go) uploads other files already
// marked .ready in archive_status, Jobs-1 at a time, while PostgreSQL's
// calls come one by one (ahead.go). A success there is recorded in a marker
// bound to the file's identity (markers.go), so PostgreSQL's later call for
// that file returns at once after a stat, and re-pushes if the file changed.
package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// Config is what a push needs; main builds it from flags.
type Config struct {
	// Open opens the archive; it is called only when something must be
	// uploaded (not when a push-ahead marker already vouches for the file).
	Open func(context.Context) (*archive.Archive, error)
	// Repo and ArchiveName identify the destination in markers, so that a
	// marker never vouches for a push to another repository or archive.
	Repo        string
	ArchiveName string
	// Timeout bounds one call, retries and push-ahead included.
	Timeout time.Duration
	// Jobs is how many files are uploaded at once, this one included.
	Jobs int
	// Key, when set, encrypts every file before it leaves this host.
	Key *envelope.Key
	// Spawn starts the detached pusher for a pg_wal directory (main
	// re-executes itself); nil keeps push-ahead inside the call.
	Spawn func(walDir string) error
	Log   *slog.Logger
	// Force pushes a file of a live pg_wal that PostgreSQL has not marked
	// .ready (see Ready).
	Force bool
	// Resident: the caller lives on after the push (the walpush agent):
	// every push takes a warm encoder from the list and gives it back,
	// instead of a one-shot encoder made for the file and dropped.
	Resident bool
}

// Result describes the push of the file PostgreSQL asked for.
type Result struct {
	Name       wal.Name
	Outcome    archive.Outcome
	FromMarker bool // pushed ahead by an earlier call; only checked now
	RawSize    int64
	StoredSize int64
	Digest     envelope.Digest
	// Beside is where a .backup file went whose name was taken by other
	// content (Outcome KeptBeside), and Taken the stored one's SHA-256.
	Beside, Taken string
}

// Describe says what the push did, for a verbose log line.
func (r Result) Describe() string {
	how := r.Outcome.String()
	if r.FromMarker {
		how = "already archived (pushed ahead earlier)"
	}
	return fmt.Sprintf("%s (%d bytes, stored as %d, sha256 %s)", how, r.RawSize, r.StoredSize, r.Digest.Short())
}

// Warning is what a DBA must read after a push that succeeded, or "": a
// .backup file kept beside another label of the same name.
func (r Result) Warning(archiveName string) string {
	if r.Beside == "" {
		return ""
	}
	return fmt.Sprintf("%s: archive %s: WARNING another label is stored under this name (sha256 %s); this one (sha256 %s) was kept beside it as %s: the backup's completion record says which is its own",
		r.Name, archiveName, r.Taken[:12], r.Digest.Short(), r.Beside)
}

// DefaultTimeout bounds one walpush call.
const DefaultTimeout = 30 * time.Second

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Jobs < 1 {
		c.Jobs = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Push archives the file at path and, with Jobs > 1, other .ready files
// next to it.
func Push(ctx context.Context, cfg Config, path string) (Result, error) {
	cfg.defaults()
	name, err := wal.ParseName(filepath.Base(path))
	if err != nil {
		return Result{}, err
	}
	if !cfg.Force {
		if err := Ready(path, name); err != nil {
			return Result{Name: name}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.Jobs == 1 {
		return pushOne(ctx, cfg, path, name)
	}
	return pushWithAhead(ctx, cfg, path, name)
}

// pushOne pushes the file with no marker and no push-ahead.
func pushOne(ctx context.Context, cfg Config, path string, name wal.Name) (Result, error) {
	if !cfg.Resident {
		return pushFile(ctx, cfg, oneShotEncoder(path), path, name)
	}
	enc := encoders.Get()
	res, err := pushFile(ctx, cfg, enc, path, name)
	if err == nil && res.Outcome.BodyDone() {
		encoders.Put(enc) // else the request may still be reading its buffer
	}
	return res, err
}

// Ready refuses a file PostgreSQL has not finished: a file of a pg_wal
// directory (one with archive_status beside it) that is neither marked
// .ready (PostgreSQL asks for it to be archived: archive_command, or
// Patroni doing so for a crashed leader) nor .done (archived before). The
// segment PostgreSQL is writing has neither, and one pushed by hand would
// be stored half-written, then refuse the finished one as a conflict.
func Ready(path string, name wal.Name) error {
	status := filepath.Join(filepath.Dir(path), "archive_status")
	if fi, err := os.Stat(status); err != nil || !fi.IsDir() {
		return nil // not a live pg_wal: a copy, or a receiver's directory
	}
	for _, suffix := range []string{".ready", ".done"} {
		if _, err := os.Stat(filepath.Join(status, name.String()+suffix)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %s: PostgreSQL has not marked it ready to archive (no archive_status/%s.ready): it may be the segment it is still writing; archive_command pushes it once it is whole (--force pushes it anyway)", errkind.ErrInvalid, path, name)
}

// pushFile checks, encodes and stores one file.
func pushFile(ctx context.Context, cfg Config, enc *envelope.Encoder, path string, name wal.Name) (Result, error) {
	res := Result{Name: name}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("%w: %v", errkind.ErrInvalid, err)
		}
		return res, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	if !fi.Mode().IsRegular() {
		return res, fmt.Errorf("%w: %s is not a regular file", errkind.ErrInvalid, path)
	}
	enc.Key = cfg.Key
	obj, err := encodeFile(enc, f, fi.Size(), name, archive.Layout{Archive: cfg.ArchiveName}.WAL(name), cfg.Key != nil || !viaDoor(cfg.Repo))
	if err != nil {
		return res, err
	}
	res.RawSize, res.StoredSize, res.Digest = obj.Header.RawSize, obj.Size(), obj.Header.Digest
	// walstored refuses a body that does not verify (damaged on the way):
	// the repository's retrying store sends it once more, not forever.
	a, err := cfg.Open(ctx)
	if err != nil {
		return res, err
	}
	res.Outcome, err = a.PutWAL(ctx, name, obj)
	var ce *archive.ConflictError
	if name.Kind == wal.Backup && errors.As(err, &ce) {
		return keepBeside(ctx, a, enc, f, name, res, ce)
	}
	return res, err
}

// keepBeside stores a .backup file whose name another content took first
// under a key bound to its own SHA-256: a .backup file only informs (the
// backup's completion record says which label is its own), and archiving
// must not stall on one, as it would retrying a conflict forever. Segment
// and history conflicts keep failing: they are the split-brain fence.
func keepBeside(ctx context.Context, a *archive.Archive, enc *envelope.Encoder, f *os.File, name wal.Name, res Result, ce *archive.ConflictError) (Result, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, wal.MaxBackupLabelSize+1))
	if err != nil {
		return res, err
	}
	key := a.Layout.LabelCopy(name, ce.New.String())
	obj, err := enc.EncodeBytes(b, key)
	if err != nil {
		return res, err
	}
	if obj.Header.Digest != ce.New {
		return res, fmt.Errorf("%s changed while being pushed", name)
	}
	if _, err := archive.PutObject(ctx, a.Store, key, obj); err != nil {
		return res, fmt.Errorf("%s: another label is stored under this name (%s), and keeping this one beside it failed: %w", name, ce.Stored.Short(), err)
	}
	res.Outcome, res.Beside, res.Taken = archive.KeptBeside, key, ce.Stored.String()
	return res, nil
}

// encodeFile validates the file against its name and packs it. Segments
// are checked by their page header before any upload; history and backup
// files must parse.
//
// The segment's WAL itself (every page and record, wal.SegmentChecker) is
// checked by walstored's door as the body arrives, which spares the
// database host that pass; an encrypted segment, which the door cannot
// read, is checked here (checkWAL) as it is read.
func encodeFile(enc *envelope.Encoder, f *os.File, size int64, name wal.Name, key string, checkWAL bool) (*envelope.Object, error) {
	enc.SystemID = 0
	var src io.Reader = f
	var chk *wal.SegmentChecker
	switch name.Kind {
	case wal.Segment, wal.Partial:
		hdr, err := wal.ReadPageHeader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := wal.CheckSegment(name, size, hdr); err != nil {
			return nil, err
		}
		enc.SystemID = hdr.SystemID
		if checkWAL {
			chk = wal.NewSegmentChecker(name, size, hdr.SystemID)
			src = io.TeeReader(f, chk)
		}
	case wal.History, wal.Backup:
		limit := int64(wal.MaxHistorySize)
		if name.Kind == wal.Backup {
			limit = wal.MaxBackupLabelSize
		}
		if size > limit {
			return nil, fmt.Errorf("%w: %s is %d bytes, more than a %s can be", errkind.ErrInvalid, name, size, name.Kind)
		}
		b, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err != nil {
			return nil, err
		}
		if name.Kind == wal.History {
			_, err = wal.ParseHistory(name.TLI, b)
		} else {
			var l wal.BackupLabel
			if l, err = wal.ParseBackupLabel(b); err == nil {
				err = wal.CheckBackupFile(name, l)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		src = bytes.NewReader(b)
	}
	obj, err := enc.Encode(src, size, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if obj.Header.RawSize != size {
		return nil, fmt.Errorf("%s changed size while being read (%d, then %d bytes)", name, size, obj.Header.RawSize)
	}
	if chk != nil {
		if _, err := chk.Close(); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// viaDoor: the repository is walstored, whose door checks every segment.
func viaDoor(repo string) bool {
	return strings.HasPrefix(repo, "http://") || strings.HasPrefix(repo, "https://")
}

// oneShotEncoder is the encoder of a walpush call that pushes one file and
// exits: for a segment, its output buffer is huge-page memory (see
// hugeBuffer).
func oneShotEncoder(path string) *envelope.Encoder {
	enc := envelope.NewEncoder()
	if fi, err := os.Stat(path); err == nil && fi.Size() >= 2<<20 && fi.Size() <= wal.MaxSegmentSize {
		if b := hugeBuffer(int(fi.Size()) + 1<<20); b != nil {
			enc.UseBuffer(b)
		}
	}
	return enc
}
