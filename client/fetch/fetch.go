// Package fetch is walfetch: it writes a WAL file from the archive to the
// path PostgreSQL's restore_command names, atomically and only after its
// SHA-256 checked out, retrying transient failures within a deadline.
//
// With Prefetch > 0, serving segment N also makes sure a background
// prefetcher is fetching N+1..N+K into a spool under pg_wal (spool.go,
// prefetcher.go), so that later calls are a local rename.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/flock"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/wal"
)

// Config is what a fetch needs; main builds it from flags.
type Config struct {
	// Open opens the archive; it is called only when the repository is
	// needed (not for a segment served from the spool).
	Open func(context.Context) (*archive.Archive, error)
	// Timeout bounds one call, retries included.
	Timeout time.Duration
	// Prefetch is how many segments past the one asked for are fetched
	// ahead into the spool; 0 disables prefetching.
	Prefetch int
	// Spawn starts a detached prefetcher for the spool directory of the
	// cluster in pgdata (main re-executes itself); nil disables
	// prefetching.
	Spawn func(spoolDir, pgdata string) error
	// Wait, when the server supports it and PGDATA has standby.signal, is
	// how long to wait for a segment that is not archived yet.
	Wait time.Duration
	// PGData is the data directory (for signal files); default: the
	// parent of DEST's pg_wal, else the working directory.
	PGData string
	Log    *slog.Logger
}

// DefaultTimeout bounds one walfetch call.
const DefaultTimeout = 30 * time.Second

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Result says where a fetched file came from.
type Result struct {
	Name      wal.Name
	Size      int64
	FromSpool bool
}

// Fetch writes the WAL file name to dest. It returns an error wrapping
// errkind.ErrNotFound only when the archive answered that the file is not
// there; every other failure is something else.
func Fetch(ctx context.Context, cfg Config, name, dest string) (Result, error) {
	cfg.defaults()
	n, err := wal.ParseName(name)
	if err != nil {
		return Result{}, err
	}
	res := Result{Name: n}
	if err := checkDest(dest); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	// The spool is used only while a PostgreSQL server is recovering from
	// this data directory: pg_rewind's restore_command (a stopped cluster,
	// no signal file) must find no helper at work in the directory it is
	// rewriting, and nothing of walfetch's there either.
	var sp *spool
	if pgdata := cfg.DataDir(dest); cfg.Prefetch > 0 && DetectMode(pgdata) != NoRecovery && worker.PostmasterAlive(pgdata) {
		sp = spoolFor(dest, pgdata)
	}
	if sp != nil && n.Kind == wal.Segment {
		size, ok := sp.take(n, dest)
		if !ok && sp.inFlight(n) {
			// The prefetcher is fetching it: waiting costs less than
			// fetching it a second time.
			flock.WaitReleased(ctx, sp.claimPath(n))
			size, ok = sp.take(n, dest)
		}
		if ok {
			res.Size, res.FromSpool = size, true
			sp.prune(n)
			cfg.announce(sp, n, size)
			return res, nil
		}
		cfg.announce(sp, n, 0)
	}
	wait := time.Duration(0)
	if cfg.Wait > 0 && n.Kind == wal.Segment && DetectMode(cfg.DataDir(dest)) == Standby {
		wait = cfg.Wait
	}
	if n.Kind == wal.Segment && DetectMode(cfg.DataDir(dest)) == ArchiveRecovery {
		// The end of the archive, for recovery, is what walstored's WAL
		// receiver flushed: the segment it is receiving is served too.
		ctx = httpstore.AcceptPartial(ctx)
	}
	// A corrupt object is read once more (another store may serve a
	// good copy, a network may have damaged it), then reported: store.Retry
	// does not retry it for the whole timeout.
	err = store.Retry(ctx, store.Backoff{Initial: 200 * time.Millisecond, Max: 3 * time.Second}, func(ctx context.Context) error {
		a, err := cfg.Open(ctx)
		if err != nil {
			return err
		}
		hdr, err := fetchTo(ctx, a, n, dest, wait, nil)
		res.Size = hdr.RawSize
		if n.Kind == wal.History && errors.Is(err, errkind.ErrNotFound) {
			var size int64
			if size, err = retiredHistory(ctx, a, n, dest); err == nil {
				res.Size = size
			}
		}
		return err
	})
	if errors.Is(err, errkind.ErrNotFound) && DetectMode(cfg.DataDir(dest)) == ArchiveRecovery {
		// Not found in an archive that never received anything is a
		// wrong --archive or --repo, not the end of the WAL: said so, and
		// not as "not found" (which would end recovery).
		if a, oerr := cfg.Open(ctx); oerr != nil {
			return res, oerr
		} else if _, serr := a.SystemID(ctx); errors.Is(serr, errkind.ErrNotFound) {
			return res, fmt.Errorf("archive %s in %s has never received a segment (wrong --archive or --repo?)", a.Name, store.Describe(a.Store))
		}
	}
	if err != nil {
		return res, err
	}
	if sp != nil && n.Kind == wal.Segment {
		sp.prune(n)
		cfg.announce(sp, n, res.Size)
	}
	return res, nil
}

// retiredHistory answers PostgreSQL's probe for the history file of a
// retired timeline with its stand-in (archive.StandInHistory): the
// number stays taken, so a promotion never reuses it, and a recovery that
// follows it replays the parent's WAL, not the dead branch's.
func retiredHistory(ctx context.Context, a *archive.Archive, n wal.Name, dest string) (int64, error) {
	rec, err := a.RetiredRecord(ctx, n.TLI)
	if err != nil {
		return 0, err
	}
	if rec == nil || rec.StandIn == "" {
		return 0, fmt.Errorf("%s: %w", a.Layout.WAL(n), errkind.ErrNotFound)
	}
	b := []byte(rec.StandIn)
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".walfetch-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dest)
	}
	return int64(len(b)), err
}

// DataDir is the data directory whose signal files say how to fail:
// PGData, else DEST's (PGDataOf).
func (c *Config) DataDir(dest string) string {
	if c.PGData != "" {
		return c.PGData
	}
	return PGDataOf(dest)
}

// PGDataOf guesses the data directory from restore_command's %p: the parent
// of pg_wal when DEST is in one (pg_rewind runs elsewhere), else the
// working directory (PostgreSQL runs restore_command in PGDATA).
func PGDataOf(dest string) string {
	abs, err := filepath.Abs(dest)
	if err == nil && filepath.Base(filepath.Dir(abs)) == "pg_wal" {
		return filepath.Dir(filepath.Dir(abs))
	}
	return "."
}

func checkDest(dest string) error {
	if dest == "" {
		return fmt.Errorf("%w: empty destination path", errkind.ErrInvalid)
	}
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: destination %s is a directory", errkind.ErrInvalid, dest)
	}
	if fi, err := os.Stat(filepath.Dir(dest)); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: destination directory %s does not exist", errkind.ErrInvalid, filepath.Dir(dest))
	}
	return nil
}

// fetchTo streams the verified contents of n into a temporary file next to
// dest and renames it into place only once the whole object checked out:
// dest appears whole or not at all, and a corrupt object never reaches it.
// With a spool checksum, its CRC-32C is computed on the way.
func fetchTo(ctx context.Context, a *archive.Archive, n wal.Name, dest string, wait time.Duration, spoolSum hash.Hash32) (envelope.Header, error) {
	key := a.Layout.WAL(n)
	var rc io.ReadCloser
	var err error
	if w, ok := store.As[store.Waiter](a.Store); ok && wait > 0 {
		rc, err = w.GetWait(ctx, key, wait)
	} else {
		rc, err = a.Store.Get(ctx, key)
	}
	if err != nil {
		return envelope.Header{}, err
	}
	defer rc.Close()
	hdr, raw, err := envelope.Open(rc, key, a.Keys)
	if err != nil {
		return hdr, fmt.Errorf("%s: %w", key, err)
	}
	defer raw.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".walfetch-*")
	if err != nil {
		return hdr, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	var w io.Writer = tmp
	if spoolSum != nil {
		w = io.MultiWriter(tmp, spoolSum)
	}
	_, err = io.Copy(w, raw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkContent(n, hdr.RawSize, tmp.Name())
	}
	if err != nil {
		if errors.Is(err, errkind.ErrCorrupt) {
			return hdr, fmt.Errorf("%s: %w", key, err)
		}
		return hdr, err
	}
	return hdr, os.Rename(tmp.Name(), dest)
}

// checkContent re-checks a segment's page header against its name: the
// digest proves the bytes are what was pushed, this proves they are the
// segment PostgreSQL asked for.
func checkContent(n wal.Name, size int64, path string) error {
	if n.Kind != wal.Segment && n.Kind != wal.Partial {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, err := wal.ReadPageHeader(f)
	if err == nil {
		err = wal.CheckSegment(n, size, hdr)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errkind.ErrCorrupt, err)
	}
	return nil
}
