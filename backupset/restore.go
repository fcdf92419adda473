package backupset

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/wal"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Archive *archive.Archive
	Backup  string // "latest" or a backup id
	PGData  string
	Target  Target
	Standby bool
	// StripCommands comments out, in the restored configuration, every
	// setting that runs a command or loads code (see runsSomething).
	StripCommands bool
	// ConfigPathMapping rewrites path settings of the restored
	// configuration: "OLD=NEW", absolute paths (Patroni's hba_file,
	// ident_file, log_directory name the source node's files).
	ConfigPathMapping []string
	// ArchiveMode is "preserve" (the default: the copy archives as the
	// backup's configuration says) or "off" (archive_mode = off: a copy
	// made to read data back never pushes its new timeline into the
	// production archive).
	ArchiveMode string
	// Owner is the user to own the restored files (when run as root).
	Owner string
	// RestoreCommand is written into postgresql.auto.conf.
	RestoreCommand string
	// Wait is the restore_command's --wait (standbys): PostgreSQL then
	// needs no pause of its own between two calls.
	Wait   time.Duration
	DryRun bool
	// Delta restores over an existing data directory of the same cluster,
	// writing only the files that differ (see delta.go).
	Delta bool
	Jobs  int // packs (or parts) fetched at once (default 4)
	// TablespaceMapping relocates tablespaces: "OLD=NEW", absolute paths;
	// a tablespace not named is restored where it was.
	TablespaceMapping []string
	// TablespacesUnder, when set, puts each tablespace not mapped in
	// <dir>/<oid> (restore drills).
	TablespacesUnder string
	Out              io.Writer
	Terminal         bool
}

// RestoreResult says what Restore did (or would do).
type RestoreResult struct {
	Backup   archive.Record `json:"backup"`
	PGData   string         `json:"pgdata"`
	Timeline string         `json:"recovery_target_timeline"`
	Settings []string       `json:"settings"` // lines added to postgresql.auto.conf
	// Removed are the recovery settings an earlier restore or recovery
	// left in the backup's postgresql.auto.conf, taken out.
	Removed  []string `json:"removed_settings"`
	Warnings []string `json:"warnings"`
	// Changed are the lines --strip-commands and --config-path-mapping
	// changed in the restored configuration.
	Changed     []string `json:"changed_settings"`
	Signal      string   `json:"signal_file"` // recovery.signal or standby.signal
	Tablespaces []string `json:"tablespaces"` // where the backup's tablespaces were restored
	// ReplaySegments and ReplayBytes are the archived WAL from the
	// backup's start on (its timeline and later ones): what recovery to
	// the end of the archive replays (less, with a target).
	ReplaySegments int         `json:"replay_segments"`
	ReplayBytes    int64       `json:"replay_bytes"`
	Delta          *deltaState `json:"delta,omitempty"` // with --delta: what was kept, written, removed
	StartCommand   string      `json:"start_command"`
}

// Restore lays a backup into an empty PGDATA, ready to recover.
func Restore(ctx context.Context, opt RestoreOptions) (RestoreResult, error) {
	if opt.Jobs <= 0 {
		opt.Jobs = 4
	}
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	res := RestoreResult{PGData: opt.PGData, Removed: []string{}, Warnings: []string{}, Changed: []string{}, Tablespaces: []string{}}
	mapping, err := parseMapping(opt.TablespaceMapping)
	if err != nil {
		return res, err
	}
	confMapping, err := parsePathMapping("--config-path-mapping", opt.ConfigPathMapping)
	if err != nil {
		return res, err
	}
	targetLines, err := opt.Target.Settings()
	if err != nil {
		return res, err
	}
	if res.Backup, err = chooseBackup(ctx, opt); err != nil {
		return res, err
	}
	if _, err := opt.Archive.CheckRecord(ctx, res.Backup); err != nil {
		return res, fmt.Errorf("%w (nothing restored)", err)
	}
	inv, err := catalog.Load(ctx, opt.Archive)
	if err != nil {
		return res, err
	}
	tlLine, warn, err := chooseTimeline(inv, opt, res.Backup)
	if err != nil {
		return res, err
	}
	res.ReplaySegments, res.ReplayBytes = replayAhead(inv, res.Backup)
	if tlLine != "" {
		res.Timeline = strings.Trim(strings.TrimPrefix(tlLine, "recovery_target_timeline = "), "'")
		targetLines = append(targetLines, tlLine)
	}
	if warn != "" {
		res.Warnings = append(res.Warnings, warn)
	}
	uid, gid, err := owner(opt)
	if err != nil {
		return res, err
	}
	var contents *archive.Contents
	var tsRoots []string // what the restore makes for the tablespaces, to chown
	if res.Backup.Format == archive.FormatBlocks {
		c, err := opt.Archive.ReadContents(ctx, res.Backup.ID)
		if err != nil {
			return res, fmt.Errorf("%w (nothing restored)", err)
		}
		contents = &c
		if opt.TablespacesUnder != "" {
			for _, e := range c.Entries {
				if _, ok := mapping[filepath.Clean(e.Link)]; e.Link != "" && !ok {
					mapping[filepath.Clean(e.Link)] = filepath.Join(opt.TablespacesUnder, path.Base(e.Path))
				}
			}
		}
		if res.Tablespaces, tsRoots, err = placeTablespaces(c, mapping, opt.PGData, opt.Delta); err != nil {
			return res, err
		}
	} else if len(mapping) > 0 {
		return res, fmt.Errorf("%w: --tablespace-mapping: backup %s has no tablespaces", errkind.ErrInvalid, res.Backup.ID)
	}
	if opt.Delta {
		if err := checkDeltaDir(ctx, opt.PGData, opt.Archive, res.Backup); err != nil {
			return res, err
		}
		if res.Delta, err = newDelta(ctx, opt.Archive, res.Backup); err != nil {
			return res, err
		}
	} else if err := checkEmpty(opt.PGData); err != nil {
		return res, err
	}
	res.Settings = append([]string{
		fmt.Sprintf("%s of backup %s (archive %s) on %s", restoreMark, res.Backup.ID, opt.Archive.Name, time.Now().UTC().Format(time.RFC3339)),
		"restore_command = " + quoteConf(opt.RestoreCommand),
	}, targetLines...)
	switch opt.ArchiveMode {
	case "", "preserve":
		if !opt.Standby {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the restored copy keeps the backup's archiving settings: once it promotes, it archives its new timeline into archive %s beside the live one; for a copy made only to read data back, restore with --archive-mode off", opt.Archive.Name))
		}
	case "off":
		res.Settings = append(res.Settings, "archive_mode = off # walfetch restore --archive-mode off: this copy archives nothing")
	default:
		return res, fmt.Errorf("%w: --archive-mode %q: want preserve or off", errkind.ErrInvalid, opt.ArchiveMode)
	}
	res.Signal = "recovery.signal"
	if opt.Standby {
		res.Signal = "standby.signal"
		if opt.Wait > 0 {
			// walfetch itself waits for the next segment, so PostgreSQL's
			// own 5 s pause between attempts would only add latency; and
			// recovery_prefetch reads ahead into the next segment before
			// the end of the current one is applied, which would hold the
			// tail of every segment back for as long as walfetch waits.
			res.Settings = append(res.Settings,
				"wal_retrieve_retry_interval = '100ms'",
				"recovery_prefetch = off # with walfetch --wait: see the walstore README")
		}
	}
	res.StartCommand = startCommand(opt, res.Backup)
	if opt.DryRun {
		fmt.Fprintf(opt.Out, "would restore backup %s of archive %s (%d files, %s; WAL from %s on timeline %d, consistent at %s, taken %s) into %s\n",
			res.Backup.ID, opt.Archive.Name, res.Backup.Files, units.Size(res.Backup.RawSize), res.Backup.StartLSN, res.Backup.StartTLI,
			res.Backup.StopLSN, res.Backup.StopTime.Format(time.RFC3339), opt.PGData)
		fmt.Fprintf(opt.Out, "would add to postgresql.auto.conf:\n  %s\nwould create %s\nthen: %s\n", strings.Join(res.Settings[1:], "\n  "), res.Signal, res.StartCommand)
		return res, nil
	}
	created, err := prepareDir(opt.PGData)
	if err != nil {
		return res, err
	}
	fail := func(err error) (RestoreResult, error) {
		abandon(opt.PGData, opt.Delta, created, res.Tablespaces)
		if opt.Delta {
			return res, fmt.Errorf("delta restore of backup %s into %s failed, the directory is partly restored (run the same command again): %w", res.Backup.ID, opt.PGData, err)
		}
		return res, fmt.Errorf("restore backup %s into %s: %w", res.Backup.ID, opt.PGData, err)
	}
	if opt.Delta {
		// Half restored, it has no signal file and no recovery settings yet.
		removeSignals(opt.PGData)
		if err := unpack(ctx, opt, res.Backup, contents, mapping, res.Delta); err != nil {
			return fail(err)
		}
		if err := res.Delta.removeStrays(opt.PGData); err != nil {
			return fail(fmt.Errorf("remove files the backup does not have: %w", err))
		}
	} else if err := unpack(ctx, opt, res.Backup, contents, mapping, nil); err != nil {
		return fail(err)
	}
	removed, err := cleanAutoConf(opt.PGData)
	if err != nil {
		return fail(fmt.Errorf("clean postgresql.auto.conf: %w", err))
	}
	res.Removed = append(res.Removed, removed...)
	res.Warnings = append(res.Warnings, confWarnings(opt.PGData)...)
	changed, err := rewriteConf(opt.PGData, opt.StripCommands, confMapping)
	if err != nil {
		return fail(fmt.Errorf("rewrite the restored configuration: %w", err))
	}
	res.Changed = changed
	carries, err := inspectConf(opt.PGData)
	if err != nil {
		return fail(err)
	}
	for _, c := range carries {
		res.Warnings = append(res.Warnings, c.String())
	}
	// The files are on disk before the signal file says they may be
	// recovered from; the signal file and the settings are too before
	// the restore says it is done.
	dirs := append([]string{opt.PGData}, res.Tablespaces...)
	if err := syncFS(dirs); err != nil {
		return fail(err)
	}
	if err := finish(opt.PGData, res); err != nil {
		return fail(err)
	}
	if uid >= 0 {
		for _, d := range append([]string{opt.PGData}, tsRoots...) {
			if err := chownTree(d, uid, gid); err != nil {
				return fail(err)
			}
		}
	}
	if err := syncFS(dirs); err != nil {
		return fail(err)
	}
	for _, l := range res.Removed {
		fmt.Fprintf(opt.Out, "removed from postgresql.auto.conf (left by an earlier recovery): %s\n", l)
	}
	for _, l := range res.Changed {
		fmt.Fprintf(opt.Out, "changed in the restored configuration: %s\n", l)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(opt.Out, "WARNING %s\n", w)
	}
	if len(res.Tablespaces) > 0 {
		fmt.Fprintf(opt.Out, "tablespaces restored into %s (links in pg_tblspc)\n", strings.Join(res.Tablespaces, ", "))
	}
	if d := res.Delta; d != nil {
		fmt.Fprintf(opt.Out, "delta: %d files already as in the backup, %d written (%s), %d removed (not in the backup, pg_wal's included); %d of %d packs read in part, %s read from the repository\n", d.Kept, d.Written, units.Size(d.Bytes), d.Removed, d.PacksInPart, d.Packs, units.Size(d.Fetched))
	}
	fmt.Fprintf(opt.Out, "restored backup %s of archive %s into %s (%d files, %s); %s written, recovery settings in postgresql.auto.conf (timeline %s)\n",
		res.Backup.ID, opt.Archive.Name, opt.PGData, res.Backup.Files, units.Size(res.Backup.RawSize), res.Signal, res.Timeline)
	fmt.Fprintf(opt.Out, "recovery replays the WAL archived since the backup's start: up to %d segments (%s) to the end of the archive\nstart PostgreSQL to recover: %s\n",
		res.ReplaySegments, units.Size(res.ReplayBytes), res.StartCommand)
	return res, nil
}

// syncFS flushes the file systems that hold dirs (syncfs(2): one call
// per file system, not an fsync per file).
func syncFS(dirs []string) error {
	for _, d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = unix.Syncfs(int(f.Fd()))
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

// chooseTimeline decides the recovery_target_timeline line: the user's,
// else the timeline the archive's history files say recovery from rec
// must follow (catalog.ChooseTimeline), named explicitly so that a dead
// branch cannot take recovery elsewhere. A standby gets 'latest' when
// PostgreSQL's own choice is that same timeline (so that it follows a
// later promotion); an ambiguous choice is refused, naming the branches.
func chooseTimeline(inv *catalog.Inventory, opt RestoreOptions, rec archive.Record) (line, warning string, err error) {
	if opt.Target.Timeline != "" {
		return "", "", nil // Settings wrote the user's
	}
	tl, ambiguous, err := inv.ChooseTimeline(rec)
	if err != nil {
		return "", "", err
	}
	if len(ambiguous) > 0 {
		return "", "", fmt.Errorf("%w: recovery from backup %s could follow timelines %v, separate branches of archive %s's history: give --target-timeline N, or retire the dead branch (walstored timeline retire)", errkind.ErrInvalid, rec.ID, ambiguous, opt.Archive.Name)
	}
	latest, ok := inv.PostgresLatest(rec)
	if opt.Standby && ok && inv.Follows(latest) == tl {
		return "recovery_target_timeline = 'latest'", "", nil
	}
	if opt.Standby {
		warning = fmt.Sprintf("this standby follows timeline %d and will not follow a later promotion by itself: PostgreSQL's 'latest' would pick timeline %d, a dead branch; retire it, then set recovery_target_timeline = 'latest'", tl, latest)
	}
	return fmt.Sprintf("recovery_target_timeline = '%d'", tl), warning, nil
}

// replayAhead counts the archived segments from rec's start on, on its
// timeline and later ones.
func replayAhead(inv *catalog.Inventory, rec archive.Record) (segments int, bytes int64) {
	start, err := wal.ParseName(rec.StartWAL)
	if err != nil || inv.SegSize == 0 {
		return 0, 0
	}
	from := start.SegNo(inv.SegSize)
	for _, f := range inv.Files {
		if f.Name.Kind == wal.Segment && f.Name.TLI >= start.TLI && f.Name.SegNo(inv.SegSize) >= from {
			segments++
			bytes += inv.SegSize
		}
	}
	return segments, bytes
}

// chooseBackup resolves "latest" (the newest backup that ended before the
// target, when there is one) or an id.
func chooseBackup(ctx context.Context, opt RestoreOptions) (archive.Record, error) {
	a := opt.Archive
	if opt.Backup != "latest" && opt.Backup != "" {
		r, err := a.LoadBackup(ctx, opt.Backup)
		if errors.Is(err, errkind.ErrNotFound) {
			return r, fmt.Errorf("unknown backup %q in archive %s (walstored list --archive %s shows the ids): %w", opt.Backup, a.Name, a.Name, errkind.ErrNotFound)
		}
		return r, err
	}
	l, err := a.ListBackups(ctx)
	if err != nil {
		return archive.Record{}, err
	}
	tm, hasTime, _ := opt.Target.parsedTime()
	var lsn wal.LSN
	if opt.Target.LSN != "" {
		lsn, _ = wal.ParseLSN(opt.Target.LSN)
	}
	for i := len(l.Complete) - 1; i >= 0; i-- {
		r := l.Complete[i]
		stop, _ := r.Stop()
		if hasTime && !r.StopTime.Before(tm) || lsn != 0 && stop > lsn {
			continue // ended after the target: it cannot reach back to it
		}
		return r, nil
	}
	if len(l.Complete) > 0 {
		return archive.Record{}, fmt.Errorf("no backup in archive %s ended before the recovery target (the oldest ended %s): %w", a.Name, l.Complete[0].StopTime.Format(time.RFC3339), errkind.ErrNotFound)
	}
	return archive.Record{}, fmt.Errorf("archive %s has no completed backup: %w", a.Name, errkind.ErrNotFound)
}

// owner resolves who will own the files: --owner (root only), else the
// owner of an existing PGDATA when run as root; -1 means "as is".
func owner(opt RestoreOptions) (int, int, error) {
	root := os.Geteuid() == 0
	if opt.Owner != "" {
		if !root {
			return 0, 0, fmt.Errorf("%w: --owner needs root; run walfetch restore as %s instead", errkind.ErrInvalid, opt.Owner)
		}
		u, err := user.Lookup(opt.Owner)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: --owner %s: %v", errkind.ErrInvalid, opt.Owner, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return uid, gid, nil
	}
	if !root {
		return -1, -1, nil
	}
	if fi, err := os.Stat(opt.PGData); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			return int(st.Uid), int(st.Gid), nil
		}
	}
	return 0, 0, fmt.Errorf("%w: running as root, and PostgreSQL refuses to run as root: give --owner postgres (or run as the postgres user)", errkind.ErrInvalid)
}

func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(filepath.Dir(filepath.Clean(dir))); err != nil {
			return fmt.Errorf("%w: parent of PGDATA %s: %v", errkind.ErrInvalid, dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%w: PGDATA %s: %v", errkind.ErrInvalid, dir, err)
	case len(entries) > 0:
		return fmt.Errorf("%w: PGDATA %s is not empty (%d entries, e.g. %s); restore only into an empty directory, never over a cluster (--delta restores over a stopped cluster of the same system, writing only what differs)", errkind.ErrInvalid, dir, len(entries), entries[0].Name())
	}
	return nil
}

func prepareDir(dir string) (created bool, err error) {
	if err := os.Mkdir(dir, 0o700); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrExist) {
		return false, err
	}
	return false, os.Chmod(dir, 0o700)
}

// abandon undoes what a failed restore wrote. A new data directory is
// emptied (removed if the restore created it), its tablespaces too, so
// nothing half restored is left to be started by mistake. A delta
// restore's directory is a cluster's own and is never emptied: it only
// loses its signal file, and the same command finishes the work.
func abandon(pgdata string, delta, created bool, tablespaces []string) {
	if delta {
		removeSignals(pgdata)
		return
	}
	cleanup(pgdata, created)
	cleanupTablespaces(tablespaces)
}

// removeSignals removes the files that let PostgreSQL start recovery.
func removeSignals(pgdata string) {
	os.Remove(filepath.Join(pgdata, "recovery.signal"))
	os.Remove(filepath.Join(pgdata, "standby.signal"))
}

// cleanup empties PGDATA after a failed restore.
func cleanup(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// cleanupTablespaces empties the tablespaces of a failed restore.
func cleanupTablespaces(dirs []string) {
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(d, e.Name()))
		}
	}
}

// partReader serves the backup's parts in order as one stream, fetching
// and verifying up to jobs parts ahead in parallel.
type partReader struct {
	ctx   context.Context
	slots []chan partData
	sem   chan struct{}
	next  int
	cur   []byte
}

type partData struct {
	data []byte
	err  error
}

func newPartReader(ctx context.Context, a *archive.Archive, rec archive.Record, jobs int) *partReader {
	pr := &partReader{ctx: ctx, slots: make([]chan partData, len(rec.Parts)), sem: make(chan struct{}, jobs)}
	for i := range pr.slots {
		pr.slots[i] = make(chan partData, 1)
	}
	go func() {
		for i, p := range rec.Parts {
			select {
			case pr.sem <- struct{}{}: // released when the part is consumed
			case <-ctx.Done():
				return
			}
			go func() { pr.slots[i] <- fetchPart(ctx, a, rec.ID, p) }()
		}
	}()
	return pr
}

func fetchPart(ctx context.Context, a *archive.Archive, id string, p archive.Part) partData {
	var data []byte
	err := a.Load(ctx, a.Layout.Backup(id, p.Name), func(hdr envelope.Header, rc io.Reader) error {
		if hdr.Digest.String() != p.SHA256 || hdr.RawSize != p.RawSize {
			return fmt.Errorf("%w: part %s is not the one the completion record lists", errkind.ErrCorrupt, p.Name)
		}
		var err error
		data, err = io.ReadAll(rc)
		return err
	})
	if err != nil {
		return partData{err: fmt.Errorf("part %s: %w", p.Name, err)}
	}
	return partData{data: data}
}

func (pr *partReader) Read(p []byte) (int, error) {
	for len(pr.cur) == 0 {
		if pr.next == len(pr.slots) {
			return 0, io.EOF
		}
		var d partData
		select {
		case d = <-pr.slots[pr.next]:
		case <-pr.ctx.Done():
			return 0, pr.ctx.Err()
		}
		<-pr.sem
		pr.next++
		if d.err != nil {
			return 0, d.err
		}
		pr.cur = d.data
	}
	n := copy(p, pr.cur)
	pr.cur = pr.cur[n:]
	return n, nil
}

// unpack lays the backup's files into PGDATA: a backup in blocks by
// unpackBlocks, an older one by extracting its tar stream with PostgreSQL's modes.
func unpack(ctx context.Context, opt RestoreOptions, rec archive.Record, c *archive.Contents, mapping map[string]string, delta *deltaState) error {
	if c != nil {
		return unpackBlocks(ctx, opt, rec, *c, mapping, delta)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prog := NewProgress(opt.Out, opt.Terminal, "restore "+rec.ID, rec.RawSize)
	defer prog.Stop()
	tr := tar.NewReader(&countingReader{r: newPartReader(ctx, opt.Archive, rec, opt.Jobs), p: prog})
	files := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		rel, err := SafePath(h.Name)
		if err != nil {
			return err
		}
		dst := filepath.Join(opt.PGData, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			if delta != nil {
				if err := delta.write(dst, rel, h.Size, tr); err != nil {
					return err
				}
				files++
				continue
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			files++
		default:
			return fmt.Errorf("%w: %s: tar entry type %q is not restored (links and tablespaces are not supported)", errkind.ErrInvalid, h.Name, h.Typeflag)
		}
	}
	if files != rec.Files {
		return fmt.Errorf("%w: unpacked %d files, the backup has %d", errkind.ErrCorrupt, files, rec.Files)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	p *Progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

// SafePath refuses tar names that would leave PGDATA.
func SafePath(name string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if clean == "." || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: tar entry %q escapes the data directory", errkind.ErrCorrupt, name)
	}
	return filepath.FromSlash(clean), nil
}

// finish writes what turns the files into a recovering cluster.
func finish(dir string, res RestoreResult) error {
	for _, d := range []string{"pg_wal", "pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n%s\n", strings.Join(res.Settings, "\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// A backup taken on a standby carries its standby.signal: left there,
	// a restore meant to end recovery would wait for WAL for ever as a
	// standby. Only the signal asked for stays.
	for _, other := range []string{"recovery.signal", "standby.signal"} {
		if other != res.Signal {
			if err := os.Remove(filepath.Join(dir, other)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, res.Signal), nil, 0o600)
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// startCommand is the one command that starts the restored cluster.
func startCommand(opt RestoreOptions, rec archive.Record) string {
	pgctl := "pg_ctl"
	if p := fmt.Sprintf("/usr/lib/postgresql/%d/bin/pg_ctl", rec.PGVersion/10000); fileExists(p) {
		pgctl = p
	}
	abs, err := filepath.Abs(opt.PGData)
	if err != nil {
		abs = opt.PGData
	}
	// The log goes next to PGDATA, not into it: a later base backup of
	// the cluster would carry it.
	cmd := fmt.Sprintf("%s -D %s -l %s start", pgctl, ShellQuote(abs), ShellQuote(abs+".log"))
	if opt.Owner != "" {
		cmd = "runuser -u " + opt.Owner + " -- " + cmd
	}
	return cmd
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
