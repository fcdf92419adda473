package backupset

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/units"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// TakeOptions configure Take.
type TakeOptions struct {
	Archive  *archive.Archive
	ConnInfo string
	// PGBaseBackup is the pg_basebackup binary; default: the one of the
	// server's major version (/usr/lib/postgresql/N/bin), else PATH's.
	PGBaseBackup string
	// SkipArchiveCommandCheck accepts an archive_command that does not name
	// its archive on the command line (settings from env or config file).
	SkipArchiveCommandCheck bool
	Jobs                    int           // parts uploaded at once (default 3)
	PartSize                int64         // raw bytes per part (default 32 MiB)
	WALTimeout              time.Duration // wait for the backup's WAL to be archived (default 5 min)
	Progress                io.Writer     // progress bar (terminal) or one summary line
	Warn                    io.Writer     // warnings (one line each)
	Terminal                bool
	Log                     *slog.Logger
}

func (o *TakeOptions) defaults() {
	if o.Jobs <= 0 {
		o.Jobs = 3
	}
	if o.PartSize <= 0 {
		o.PartSize = 32 << 20
	}
	if o.WALTimeout <= 0 {
		o.WALTimeout = 5 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Warn == nil {
		o.Warn = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Take backs the cluster up into the archive and returns its record.
func Take(ctx context.Context, opt TakeOptions) (archive.Record, error) {
	opt.defaults()
	a := opt.Archive
	cl, err := Inspect(ctx, opt.ConnInfo)
	if err != nil {
		return archive.Record{}, err
	}
	bound, err := boundSystem(ctx, a)
	if err != nil {
		return archive.Record{}, err
	}
	if err := cl.Check(a.Name, bound, !opt.SkipArchiveCommandCheck); err != nil {
		return archive.Record{}, err
	}
	for _, st := range cl.RecoverySettings {
		fmt.Fprintf(opt.Warn, "WARNING the cluster carries a recovery setting (%s) that goes into this backup: walfetch restore removes it from postgresql.auto.conf, but remove it from the cluster (ALTER SYSTEM RESET, or postgresql.conf)\n", st)
	}
	if bound == 0 {
		// A new cluster's first backup may come before its first archived
		// segment: the backup binds the archive, the segments must follow.
		if err := a.Bind(ctx, cl.SystemID); err != nil {
			return archive.Record{}, err
		}
	}
	started := time.Now()
	id, err := freeID(ctx, a, started)
	if err != nil {
		return archive.Record{}, err
	}
	bin, err := pgBaseBackup(opt.PGBaseBackup, cl.Major())
	if err != nil {
		return archive.Record{}, err
	}
	rec, err := stream(ctx, opt, bin, id, cl)
	if err != nil {
		// Leave nothing behind: a backup is complete or absent.
		if _, _, derr := a.DeleteBackup(context.WithoutCancel(ctx), id); derr != nil {
			opt.Log.Warn("could not remove the parts of a failed backup", "backup", id, "error", derr.Error())
		}
		return archive.Record{}, fmt.Errorf("backup %s: %w", id, err)
	}
	return rec, nil
}

// freeID returns archive.NewBackupID(t), made unique if a backup started in the same
// second.
func freeID(ctx context.Context, a *archive.Archive, t time.Time) (string, error) {
	base := archive.NewBackupID(t)
	for i := 0; i < 100; i++ {
		id := base
		if i > 0 {
			id = fmt.Sprintf("%s-%d", base, i)
		}
		taken := false
		err := a.Store.List(ctx, a.Layout.BackupPrefix(id), func(store.Info) error { taken = true; return errStop })
		if err != nil && !errors.Is(err, errStop) {
			return "", err
		}
		if !taken {
			return id, nil
		}
	}
	return "", fmt.Errorf("no free backup id for %s", base)
}

var errStop = errors.New("stop")

// pgBaseBackup picks the binary matching the server's major version.
func pgBaseBackup(explicit string, major int) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	p := fmt.Sprintf("/usr/lib/postgresql/%d/bin/pg_basebackup", major)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("pg_basebackup"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: no pg_basebackup for PostgreSQL %d (install postgresql-client-%d or give --pg-basebackup)", archive.ErrInvalid, major, major)
}

// tarInfo is what the tar stream tells about the backup.
type tarInfo struct {
	label    []byte
	manifest []byte
	files    int
}

// inspectTar reads the tar stream as it goes by, keeping backup_label and
// backup_manifest. It drains its input even after an error, so the writer
// never blocks.
func inspectTar(r io.Reader) (tarInfo, error) {
	var info tarInfo
	tr := tar.NewReader(r)
	var err error
	for {
		var h *tar.Header
		h, err = tr.Next()
		if err != nil {
			break
		}
		switch h.Typeflag {
		case tar.TypeReg:
			info.files++
			switch h.Name {
			case "backup_label":
				info.label, err = io.ReadAll(io.LimitReader(tr, wal.MaxBackupLabelSize))
			case "backup_manifest":
				info.manifest, err = io.ReadAll(io.LimitReader(tr, 256<<20))
			}
		case tar.TypeSymlink:
			if strings.HasPrefix(h.Name, "pg_tblspc/") {
				err = fmt.Errorf("%w: tablespace link %s in the backup", archive.ErrInvalid, h.Name)
			}
		}
		if err != nil {
			break
		}
	}
	io.Copy(io.Discard, r)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err == nil && info.label == nil {
		err = fmt.Errorf("%w: the backup has no backup_label", archive.ErrInvalid)
	}
	return info, err
}

func stream(ctx context.Context, opt TakeOptions, bin, id string, cl Cluster) (archive.Record, error) {
	a := opt.Archive
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	label := "walstore " + id
	cmd := exec.CommandContext(ctx, bin, "-d", opt.ConnInfo, "-D", "-", "-Ft", "-X", "none", "-c", "fast", "-l", label, "-w")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return archive.Record{}, err
	}
	var stderr tailBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return archive.Record{}, fmt.Errorf("start %s: %w", bin, err)
	}
	defer cmd.Wait() // reaped on every path

	est := estimateSize(ctx, opt.ConnInfo)
	prog := newProgress(opt.Progress, opt.Terminal, "backup "+id, est)
	defer prog.stop()

	pr, pw := io.Pipe()
	tarc := make(chan struct {
		info tarInfo
		err  error
	}, 1)
	go func() {
		info, err := inspectTar(pr)
		tarc <- struct {
			info tarInfo
			err  error
		}{info, err}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Jobs)
	var parts []*archive.Part // pointers: the uploads fill them in while the list grows
	var rawTotal, storedTotal atomic.Int64
	readErr := func() error {
		for i := 0; ; i++ {
			buf := make([]byte, opt.PartSize)
			n, err := io.ReadFull(stdout, buf)
			if n > 0 {
				buf = buf[:n]
				pw.Write(buf)
				prog.add(int64(n))
				name := fmt.Sprintf("%s%05d", archive.PartPrefix, i)
				part := &archive.Part{Name: name, RawSize: int64(n)}
				parts = append(parts, part)
				g.Go(func() error {
					key := a.Layout.Backup(id, name)
					obj, err := a.Encoder().EncodeBytes(buf, key)
					if err != nil {
						return err
					}
					if _, err := archive.PutObject(gctx, a.Store, key, obj); err != nil {
						return fmt.Errorf("store %s: %w", name, err)
					}
					part.StoredSize, part.SHA256 = obj.Size(), obj.Header.Digest.String()
					rawTotal.Add(int64(n))
					storedTotal.Add(obj.Size())
					return nil
				})
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil
			}
			if err != nil {
				return err
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
		}
	}()
	pw.Close()
	uploadErr := g.Wait()
	waitErr := cmd.Wait()
	ti := <-tarc
	switch {
	case uploadErr != nil:
		return archive.Record{}, uploadErr
	case waitErr != nil:
		return archive.Record{}, fmt.Errorf("pg_basebackup failed: %v: %s", waitErr, stderr.String())
	case readErr != nil:
		return archive.Record{}, fmt.Errorf("read pg_basebackup's output: %w", readErr)
	case ti.err != nil:
		return archive.Record{}, fmt.Errorf("pg_basebackup's tar stream: %w", ti.err)
	}
	prog.stop()

	bl, err := wal.ParseBackupLabel(ti.info.label)
	if err != nil {
		return archive.Record{}, fmt.Errorf("backup_label: %w", err)
	}
	var hist wal.Name
	var stopLabel wal.BackupLabel
	if cl.InRecovery {
		// A standby archives no .backup file: the stop position is the
		// end of the WAL range PostgreSQL wrote into the manifest, and
		// the WAL up to it comes from the primary's archiving.
		if stopLabel, err = standbyStop(bl, ti.info.manifest, cl.SegmentSize); err != nil {
			return archive.Record{}, err
		}
	} else {
		if hist, stopLabel, err = waitBackupFile(ctx, a, bl, cl.SegmentSize, opt.WALTimeout); err != nil {
			return archive.Record{}, err
		}
		// The .backup file came through archive_command, which a push
		// token can write: it must be this backup's own label, line for
		// line.
		if err := archive.CrossCheck(bl, stopLabel); err != nil {
			return archive.Record{}, fmt.Errorf("the archived %s is not this backup's: %w", hist, err)
		}
	}
	if err := waitWAL(ctx, a, bl.StartWAL, stopLabel.StopWAL, cl.SegmentSize, opt.WALTimeout); err != nil {
		return archive.Record{}, err
	}
	backupFile := ""
	if !cl.InRecovery {
		backupFile = hist.String()
	}
	rec := archive.Record{
		ID: id, Archive: a.Name, Label: label,
		SystemID: fmt.Sprint(cl.SystemID), PGVersion: cl.VersionNum, SegmentSize: cl.SegmentSize,
		StartLSN: bl.StartLSN.String(), StopLSN: stopLabel.StopLSN.String(),
		StartTLI: bl.StartTLI, StopTLI: stopLabel.StopTLI,
		StartWAL: bl.StartWAL.String(), StopWAL: stopLabel.StopWAL.String(),
		BackupFile: backupFile, FromStandby: cl.InRecovery,
		StartTime: stopLabel.StartTime, StopTime: stopLabel.StopTime,
		Files: ti.info.files, RawSize: rawTotal.Load(), StoredSize: storedTotal.Load(),
		Manifest: ti.info.manifest != nil, BackupLabel: string(ti.info.label),
	}
	for _, p := range parts {
		rec.Parts = append(rec.Parts, *p)
	}
	if rec.Manifest {
		key := a.Layout.Backup(id, archive.ManifestFile)
		obj, err := a.Encoder().EncodeBytes(ti.info.manifest, key)
		if err != nil {
			return archive.Record{}, err
		}
		if _, err := archive.PutObject(ctx, a.Store, key, obj); err != nil {
			return archive.Record{}, fmt.Errorf("store the manifest: %w", err)
		}
		rec.StoredSize += obj.Size()
	}
	// The completion record goes last: from now on the backup exists.
	if err := a.PutRecord(ctx, rec); err != nil {
		return archive.Record{}, fmt.Errorf("store the completion record: %w", err)
	}
	fmt.Fprintf(opt.Progress, "backup %s of archive %s: %d files, %s raw, %s stored (%.2f), %s at %s/s; WAL %s to %s on timeline %d\n",
		id, a.Name, rec.Files, human(rec.RawSize), human(rec.StoredSize), float64(rec.StoredSize)/float64(max(rec.RawSize, 1)),
		time.Since(prog.start).Round(time.Millisecond), human(int64(float64(rec.RawSize)/time.Since(prog.start).Seconds())),
		rec.StartLSN, rec.StopLSN, rec.StartTLI)
	return rec, nil
}

// standbyStop is what the .backup file would say of a backup taken on a
// standby: its label, with the stop position from the last WAL range of
// its manifest and the stop time now (when pg_basebackup finished: no
// earlier than the real stop, so a restore to a time picks it only when
// it surely ends before that time).
func standbyStop(bl wal.BackupLabel, manifest []byte, segSize int64) (wal.BackupLabel, error) {
	if manifest == nil {
		return bl, fmt.Errorf("%w: a backup from a standby needs its backup_manifest (for its stop position): do not give pg_basebackup --no-manifest", archive.ErrInvalid)
	}
	ranges, err := archive.ManifestWALRanges(manifest)
	if err != nil {
		return bl, err
	}
	last := ranges[len(ranges)-1]
	end := last.End
	if end <= bl.StartLSN || last.Timeline < bl.StartTLI {
		return bl, fmt.Errorf("%w: the manifest's WAL range ends at %s on timeline %d, the backup starts at %s on %d", archive.ErrInvalid, end, last.Timeline, bl.StartLSN, bl.StartTLI)
	}
	out := bl
	out.StopLSN, out.StopTLI = end, last.Timeline
	out.StopWAL = wal.SegmentName(last.Timeline, (uint64(end)-1)/uint64(segSize), segSize)
	out.StopTime = time.Now().UTC().Add(time.Second).Truncate(time.Second) // rounded up
	return out, nil
}

// backupFileName is the .backup history file PostgreSQL archives for a
// backup that started at bl.
func backupFileName(bl wal.BackupLabel, segSize int64) wal.Name {
	n := bl.StartWAL
	n.Kind = wal.Backup
	n.Offset = uint32(uint64(bl.StartLSN) % uint64(segSize))
	return n
}

// waitBackupFile waits for PostgreSQL to archive the backup's .backup
// history file and returns its name and parsed contents (with the stop
// position).
func waitBackupFile(ctx context.Context, a *archive.Archive, bl wal.BackupLabel, segSize int64, timeout time.Duration) (wal.Name, wal.BackupLabel, error) {
	name := backupFileName(bl, segSize)
	deadline := time.Now().Add(timeout)
	for {
		l, err := a.ReadBackupFile(ctx, name)
		if err == nil {
			if l.StartLSN != bl.StartLSN {
				return name, l, fmt.Errorf("%w: %s starts at %s, the backup at %s", archive.ErrCorrupt, name, l.StartLSN, bl.StartLSN)
			}
			return name, l, nil
		}
		if !errors.Is(err, archive.ErrNotFound) {
			return name, l, err
		}
		if time.Now().After(deadline) {
			return name, l, fmt.Errorf("the backup history file %s did not reach archive %s within %v: is archiving working?", name, a.Name, timeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return name, l, err
		}
	}
}

// waitWAL waits until every segment from first to last is archived.
func waitWAL(ctx context.Context, a *archive.Archive, first, last wal.Name, segSize int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for n := first; wal.Compare(n, last) <= 0; {
		_, err := a.Store.Stat(ctx, a.Layout.WAL(n))
		switch {
		case err == nil:
			n = n.Next(segSize)
			continue
		case !errors.Is(err, archive.ErrNotFound):
			return err
		case time.Now().After(deadline):
			return fmt.Errorf("segment %s, needed to restore the backup, did not reach archive %s within %v", n, a.Name, timeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// estimateSize is the sum of the databases' sizes, for progress; 0 if it
// cannot be read.
func estimateSize(ctx context.Context, conninfo string) int64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgConnect(ctx, conninfo)
	if err != nil {
		return 0
	}
	defer conn.Close(context.Background())
	var n int64
	conn.QueryRow(ctx, `SELECT sum(pg_database_size(oid))::bigint FROM pg_database`).Scan(&n)
	return n
}

// tailBuffer keeps the last 4 KiB written (pg_basebackup's stderr).
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	return strings.Join(strings.Fields(string(bytes.TrimSpace(t.b))), " ")
}

// human formats a byte count.
var human = units.Size
