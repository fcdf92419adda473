package take

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Options configure Take.
type Options struct {
	Archive  *archive.Archive
	ConnInfo string
	// PGBaseBackup is the pg_basebackup binary; default: the one of the
	// server's major version (/usr/lib/postgresql/N/bin), else PATH's.
	PGBaseBackup string
	// SkipArchiveCommandCheck accepts an archive_command that does not name
	// its archive on the command line (settings from env or config file).
	SkipArchiveCommandCheck bool
	// PGData, when set, reads the files here (walstored backup --pgdata,
	// on the database host) instead of through pg_basebackup.
	PGData string
	// Readers is how many files the local reader reads at once (default 4).
	Readers int
	// FullRead reads every file, also those the newest backup holds
	// unchanged (same size, times and inode; not modified in the minute
	// before it began), which are otherwise taken from it unread.
	FullRead bool
	// SealKey is the database host's secret (LoadSealKey) that seals each
	// entry the local reader writes; a file is taken unread from the
	// newest backup only when its entry's seal verifies. Nil: nothing is
	// sealed and every file is read.
	SealKey []byte
	// AcceptBadChecksums stores a backup with pages whose checksum fails
	// (listed in its record) instead of failing it.
	AcceptBadChecksums bool
	Jobs               int           // packs uploaded at once (default 3)
	WALTimeout         time.Duration // wait for the backup's WAL to be archived (default 5 min)
	Progress           io.Writer     // backupset.Progress bar (terminal) or one summary line
	Warn               io.Writer     // warnings (one line each)
	Terminal           bool
	Log                *slog.Logger
}

func (o *Options) defaults() {
	if o.Jobs <= 0 {
		o.Jobs = 3
	}
	if o.Readers <= 0 {
		o.Readers = 4
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
func Take(ctx context.Context, opt Options) (archive.Record, error) {
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
	if !opt.SkipArchiveCommandCheck && cl.NeedsProof() {
		// archive_command does not say where it pushes (a wrapper
		// script), or archive_library archives through an agent:
		// PostgreSQL archives a segment, and it must arrive.
		wait := min(opt.WALTimeout, 2*time.Minute)
		if _, err := CheckArchiving(ctx, a, opt.ConnInfo, true, wait); err != nil {
			return archive.Record{}, fmt.Errorf("%s does not say which archive it pushes to, and a segment PostgreSQL archived did not reach archive %s: %w (--skip-archive-command-check backs up anyway)", cl.Archiver(), a.Name, err)
		}
	}
	if len(cl.Tablespaces) > 0 && opt.PGData == "" {
		return archive.Record{}, fmt.Errorf("%w: the cluster has tablespaces (%s), which pg_basebackup cannot stream as one tar: run walstored backup on the database host with --pgdata DIR", errkind.ErrInvalid, strings.Join(cl.Tablespaces, ", "))
	}
	for _, st := range cl.RecoverySettings {
		fmt.Fprintf(opt.Warn, "WARNING the cluster carries a recovery setting (%s) that goes into this backup: walfetch restore removes it from postgresql.auto.conf, but remove it from the cluster (ALTER SYSTEM RESET, or postgresql.conf)\n", st)
	}
	if bound == 0 && !a.Guarded() {
		// A new cluster's first backup may come before its first archived
		// segment: the backup binds the archive, the segments must follow.
		// (walstored binds an archive itself, from its first segment.)
		if err := a.Bind(ctx, cl.SystemID); err != nil {
			return archive.Record{}, err
		}
	}
	started := time.Now()
	id, err := freeID(ctx, a, started)
	if err != nil {
		return archive.Record{}, err
	}
	rec, err := take(ctx, opt, id, cl)
	if err != nil {
		return archive.Record{}, fmt.Errorf("backup %s: %w%s", id, err, leftBehind(context.WithoutCancel(ctx), opt, id))
	}
	return rec, nil
}

// take reads the cluster's files (locally with PGData, else through
// pg_basebackup) into blocks and packs, then completes the backup.
func take(ctx context.Context, opt Options, id string, cl Cluster) (archive.Record, error) {
	a := opt.Archive
	est := estimateSize(ctx, opt.ConnInfo)
	prog := backupset.NewProgress(opt.Progress, opt.Terminal, "backup "+id, est)
	defer prog.Stop()
	idx, unproven, prev, err := loadIndex(ctx, a)
	if err != nil {
		return archive.Record{}, fmt.Errorf("read what the archive holds: %w", err)
	}
	bw := newBlockWriter(ctx, a, id, idx, unproven, opt.Jobs)
	bw.sealKey = opt.SealKey
	// The first backupset.Progress record marks the backup as started (an
	// incomplete backup in list), before any pack is stored.
	if _, err := a.PutBackupJSON(ctx, id, archive.ProgressPrefix+"start", archive.PackProgress{}); err != nil {
		return archive.Record{}, err
	}
	if opt.PGData != "" {
		err = readLocal(ctx, opt, id, cl, bw, prev, prog)
	} else {
		var bin string
		if bin, err = pgBaseBackup(opt.PGBaseBackup, cl.Major()); err == nil {
			err = streamRemote(ctx, opt, bin, id, bw, prog)
		}
	}
	for _, w := range bw.warnings {
		fmt.Fprintf(opt.Warn, "WARNING %s\n", w)
	}
	if err != nil {
		return archive.Record{}, err
	}
	prog.Stop()
	return complete(ctx, opt, id, cl, bw, prog)
}

// leftBehind decides what stays of a failed backup: the packs it stored
// and their backupset.Progress records stay (the same command, run again, uploads
// none of them; retention removes them after a day if it is not); a
// backup that stored no pack leaves nothing.
func leftBehind(ctx context.Context, opt Options, id string) string {
	a := opt.Archive
	ps, err := a.ReadProgress(ctx, id)
	packs := 0
	for _, p := range ps {
		if p.Pack != "" {
			packs++
		}
	}
	if err == nil && packs > 0 {
		return fmt.Sprintf(" (the %d packs it stored stay: run the same command again to continue without uploading them)", packs)
	}
	if _, _, derr := a.DeleteBackup(ctx, id); derr != nil {
		opt.Log.Warn("could not remove the objects of a failed backup", "backup", id, "error", derr.Error())
	}
	return ""
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
	return "", fmt.Errorf("%w: no pg_basebackup for PostgreSQL %d (install postgresql-client-%d or give --pg-basebackup)", errkind.ErrInvalid, major, major)
}

// streamRemote runs pg_basebackup and feeds its tar stream to bw.
func streamRemote(ctx context.Context, opt Options, bin, id string, bw *blockWriter, prog *backupset.Progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-d", opt.ConnInfo, "-D", "-", "-Ft", "-X", "none", "-c", "fast", "-l", backupLabel(id), "-w")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr tailBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	defer cmd.Wait() // reaped on every path
	consumeErr := bw.consume(stdout, prog)
	if consumeErr != nil {
		cancel() // pg_basebackup: stop
	}
	waitErr := cmd.Wait()
	switch {
	case consumeErr != nil && !errors.Is(consumeErr, context.Canceled):
		return consumeErr
	case waitErr != nil:
		return fmt.Errorf("pg_basebackup failed: %v: %s", waitErr, stderr.String())
	}
	return consumeErr
}

// backupLabel is the label PostgreSQL writes into backup id's
// backup_label.
func backupLabel(id string) string { return "walstore " + id }

// complete checks what the backup's label says against the archive,
// waits for its WAL, and stores its contents, manifest and, last, its
// completion record.
func complete(ctx context.Context, opt Options, id string, cl Cluster, bw *blockWriter, prog *backupset.Progress) (archive.Record, error) {
	a := opt.Archive
	label := backupLabel(id)
	prog.Stop()
	bl, err := wal.ParseBackupLabel(bw.label)
	if err != nil {
		return archive.Record{}, fmt.Errorf("backup_label: %w", err)
	}
	var hist wal.Name
	var histKey string
	var stopLabel wal.BackupLabel
	if cl.InRecovery && bw.stop != 0 {
		// Read locally: pg_backup_stop said where the backup ends.
		stopLabel = stopAt(bl, bw.stop, bw.stopTLI, cl.SegmentSize)
	} else if cl.InRecovery {
		// A standby archives no .backup file: the stop position is the
		// end of the WAL range PostgreSQL wrote into the manifest, and
		// the WAL up to it comes from the primary's archiving.
		if stopLabel, err = standbyStop(bl, bw.manifest, cl.SegmentSize); err != nil {
			return archive.Record{}, err
		}
	} else {
		// The .backup file came through archive_command, which a push
		// token can write: it must be this backup's own label, line for
		// line (waitBackupFile takes only such a one).
		if hist, histKey, stopLabel, err = waitBackupFile(ctx, a, bl, cl.SegmentSize, opt.WALTimeout); err != nil {
			return archive.Record{}, err
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
		BackupFile: backupFile, BackupFileKey: histKey, FromStandby: cl.InRecovery,
		StartTime: stopLabel.StartTime, StopTime: stopLabel.StopTime,
		Files: bw.files, RawSize: bw.raw.Load(),
		Manifest: bw.manifest != nil, BackupLabel: string(bw.label),
		Format: archive.FormatBlocks, BlockSize: backupset.BlockSize, ReusedSize: bw.reusedRaw.Load(),
		ReadLocally: opt.PGData != "", TablespaceMap: bw.spcMap, BadPages: bw.badPages,
		Parts: []archive.Part{},
	}
	if rec.BadPages == nil {
		rec.BadPages = []string{}
	}
	contents := bw.contents()
	rec.Packs = len(contents.Packs)
	if err := checkPacks(ctx, a, contents); err != nil {
		return archive.Record{}, err
	}
	n, err := a.PutBackupJSON(ctx, id, archive.ContentsFile, contents)
	if err != nil {
		return archive.Record{}, err
	}
	rec.StoredSize = bw.added.Load() + n
	if rec.Manifest {
		key := a.Layout.Backup(id, archive.ManifestFile)
		obj, err := a.Encoder().EncodeBytes(bw.manifest, key)
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
	fmt.Fprintf(opt.Progress, "backup %s of archive %s: %d files, %s raw, %s already stored, %s added (%.2f of raw), %s at %s/s; WAL %s to %s on timeline %d\n",
		id, a.Name, rec.Files, human(rec.RawSize), human(rec.ReusedSize), human(rec.StoredSize), float64(rec.StoredSize)/float64(max(rec.RawSize, 1)),
		prog.Elapsed().Round(time.Millisecond), human(int64(float64(rec.RawSize)/prog.Elapsed().Seconds())),
		rec.StartLSN, rec.StopLSN, rec.StartTLI)
	if bw.unread > 0 {
		fmt.Fprintf(opt.Progress, "  %d files unchanged since backup %s were taken from it unread (--full-read reads them)\n", bw.unread, bw.unreadFrom)
	}
	return rec, nil
}

// standbyStop is what the .backup file would say of a backup taken on a
// standby by pg_basebackup: its label, with the stop position from the
// last WAL range of its manifest.
func standbyStop(bl wal.BackupLabel, manifest []byte, segSize int64) (wal.BackupLabel, error) {
	if manifest == nil {
		return bl, fmt.Errorf("%w: a backup from a standby needs its backup_manifest (for its stop position): do not give pg_basebackup --no-manifest", errkind.ErrInvalid)
	}
	ranges, err := archive.ManifestWALRanges(manifest)
	if err != nil {
		return bl, err
	}
	last := ranges[len(ranges)-1]
	end := last.End
	if end <= bl.StartLSN || last.Timeline < bl.StartTLI {
		return bl, fmt.Errorf("%w: the manifest's WAL range ends at %s on timeline %d, the backup starts at %s on %d", errkind.ErrInvalid, end, last.Timeline, bl.StartLSN, bl.StartTLI)
	}
	return stopAt(bl, end, last.Timeline, segSize), nil
}

// stopAt is bl with its stop at end on timeline tli, and the stop time
// now (when the backup finished: no earlier than the real stop, so a
// restore to a time picks it only when it surely ends before that time).
func stopAt(bl wal.BackupLabel, end wal.LSN, tli uint32, segSize int64) wal.BackupLabel {
	out := bl
	out.StopLSN, out.StopTLI = end, tli
	out.StopWAL = wal.SegmentName(tli, (uint64(end)-1)/uint64(segSize), segSize)
	out.StopTime = time.Now().UTC().Add(time.Second).Truncate(time.Second) // rounded up
	return out
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
// history file and returns its name, where it is (its name's key, "", or
// the copy kept beside another content that took the name first: a push
// token could plant one there) and its contents (with the stop position).
// Only a file that is this backup's label line for line is taken.
func waitBackupFile(ctx context.Context, a *archive.Archive, bl wal.BackupLabel, segSize int64, timeout time.Duration) (wal.Name, string, wal.BackupLabel, error) {
	name := backupFileName(bl, segSize)
	deadline := time.Now().Add(timeout)
	var foreign error
	for {
		l, err := a.ReadBackupFile(ctx, name)
		switch {
		case err == nil:
			if err = archive.CrossCheck(bl, l); err == nil {
				return name, "", l, nil
			}
			foreign = fmt.Errorf("the archived %s is not this backup's: %w", name, err)
			key, l, err := ownCopy(ctx, a, name, bl)
			if err != nil || key != "" {
				return name, key, l, err
			}
		case !errors.Is(err, errkind.ErrNotFound):
			return name, "", l, err
		}
		if time.Now().After(deadline) {
			if foreign != nil {
				return name, "", l, foreign
			}
			return name, "", l, fmt.Errorf("the backup history file %s did not reach archive %s within %v: is archiving working?", name, a.Name, timeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return name, "", l, err
		}
	}
}

// ownCopy looks among the copies of .backup file name kept beside
// another content for this backup's own label.
func ownCopy(ctx context.Context, a *archive.Archive, name wal.Name, bl wal.BackupLabel) (string, wal.BackupLabel, error) {
	var keys []string
	err := a.Store.List(ctx, a.Layout.LabelCopiesPrefix(name), func(i store.Info) error {
		keys = append(keys, i.Key)
		return nil
	})
	if err != nil {
		return "", wal.BackupLabel{}, err
	}
	for _, k := range keys {
		l, err := a.ReadBackupFileAt(ctx, k, name)
		if err == nil && archive.CrossCheck(bl, l) == nil {
			return k, l, nil
		}
	}
	return "", wal.BackupLabel{}, nil
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
		case !errors.Is(err, errkind.ErrNotFound):
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
