package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Problem is one thing verify found wrong.
type Problem struct {
	Key string `json:"key"`
	Err error  `json:"-"`
	// Message is Err's text (for JSON).
	Message string `json:"error"`
}

func (p Problem) String() string { return fmt.Sprintf("%s: %v", p.Key, p.Err) }

// Report is the outcome of Verify.
type Report struct {
	Archive  string    `json:"archive"`
	Objects  int       `json:"objects"`
	Bytes    int64     `json:"bytes"`
	OK       bool      `json:"ok"`
	Problems []Problem `json:"problems"`       // corrupt objects, broken backups, bad histories, gaps, dead branches
	Warnings []string  `json:"warnings"`       // things to look at that do not break recovery
	Paths    []Path    `json:"recovery_paths"` // recovery paths checked, one per backup
	Skipped  []string  `json:"skipped"`        // checks that need the archive's key, which was not given
	// Reused counts the objects not read again: unchanged since the last
	// verify found them intact (Objects includes them).
	Reused int `json:"reused"`
	// PacksRead counts the packs --deep read to check backups' blocks.
	PacksRead int `json:"packs_read"`
}

// Verify reads every object of the archive and checks it (jobs at a
// time: envelope, binding to its name, SHA-256), checks that the history
// files parse and agree, that every completed backup has all its parts (or packs)
// and its .backup file, that WAL is continuous from each backup's start to
// the newest segment of the timeline it follows, that no dead branch
// waits in recovery's way, and that PostgreSQL's default recovery
// (recovery_target_timeline = 'latest') from the newest backup would
// start. Problems are collected, not returned as errors; the error is for
// failures to read the archive at all.
//
// What passed is recorded (archive.VerifyChecked) with opt.Record: the
// next run reads only objects that are new or changed since, unless
// opt.Full. What did not is recorded too (archive.VerifyResult), for
// archives, the status page and the metrics.
func Verify(ctx context.Context, a *archive.Archive, opt VerifyOptions) (Report, error) {
	rep := Report{Archive: a.Name, Problems: []Problem{}, Warnings: []string{}, Paths: []Path{}, Skipped: []string{}}
	inv, err := Load(ctx, a)
	if err != nil {
		return rep, err
	}
	prev := archive.VerifyChecked{Objects: map[string]archive.CheckedObject{}, Blocks: map[string]map[string]bool{}}
	if !opt.Full {
		if prev, err = a.LastChecked(ctx); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("what the last verify checked could not be read (%v): every object is read", err))
			prev = archive.VerifyChecked{Objects: map[string]archive.CheckedObject{}, Blocks: map[string]map[string]bool{}}
		}
	}
	checked := archive.VerifyChecked{At: time.Now().UTC(), Objects: map[string]archive.CheckedObject{}, Blocks: map[string]map[string]bool{}}
	var broken []archive.BrokenObject
	var mu sync.Mutex
	add := func(key string, err error) {
		mu.Lock()
		rep.Problems = append(rep.Problems, Problem{Key: key, Err: err, Message: err.Error()})
		mu.Unlock()
	}
	var keys []store.Info
	if err := a.Store.List(ctx, a.Name+"/", func(i store.Info) error { keys = append(keys, i); return nil }); err != nil {
		return rep, err
	}
	segs := map[wal.Name]wal.SegmentSummary{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, opt.Jobs))
	for _, k := range keys {
		wk, kerr := archive.ParseKey(k.Key)
		if kerr == nil && wk.Kind == archive.KindVerifyRecord {
			continue // rewritten by this run
		}
		if c, ok := prev.Objects[k.Key]; ok && c.Size == k.Size && c.ModTime.Equal(k.ModTime) {
			checked.Objects[k.Key] = c
			if c.Segment != nil && kerr == nil {
				segs[wk.WAL] = *c.Segment
			}
			rep.Objects++
			rep.Reused++
			continue
		}
		g.Go(func() error {
			n, sum, err := verifyObject(gctx, a, k.Key)
			if err != nil {
				if !errors.Is(err, errkind.ErrCorrupt) && !errors.Is(err, errkind.ErrNotFound) && gctx.Err() == nil {
					return fmt.Errorf("read %s: %w", k.Key, err)
				}
				add(k.Key, err)
				mu.Lock()
				broken = append(broken, archive.BrokenObject{Key: k.Key, ModTime: k.ModTime, Error: err.Error()})
				mu.Unlock()
			}
			mu.Lock()
			defer mu.Unlock()
			if sum != nil && kerr == nil {
				segs[wk.WAL] = *sum
			}
			if err == nil {
				checked.Objects[k.Key] = archive.CheckedObject{Size: k.Size, ModTime: k.ModTime, Segment: sum}
			}
			rep.Objects++
			rep.Bytes += n
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	record := func() {
		if !opt.Record || len(keys) == 0 {
			return // an archive that holds nothing is not made by a record
		}
		sort.Slice(broken, func(i, j int) bool { return broken[i].Key < broken[j].Key })
		res := archive.VerifyResult{At: checked.At, Full: opt.Full, OK: rep.OK, Broken: broken, Problems: len(rep.Problems)}
		if res.Broken == nil {
			res.Broken = []archive.BrokenObject{}
		}
		if err := a.PutVerifyRecords(ctx, res, checked); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("what this verify found could not be recorded (%v): the next one reads everything again, and archives and the status page do not know of it", err))
		}
	}
	if inv.SegSize > 0 {
		checkBoundaries(a, segs, inv.SegSize, add)
	}
	if opt.Deep {
		// Blocks proven before stay proven while their pack is the one
		// verified then (unchanged).
		for p, bs := range prev.Blocks {
			if _, ok := checked.Objects[a.Layout.Pack(p)]; ok {
				checked.Blocks[p] = bs
			}
		}
		n, err := deepCheck(ctx, a, inv, checked.Blocks, func(key string, err error) {
			add(key, err)
			if k, kerr := archive.ParseKey(key); kerr == nil && k.Kind == archive.KindPack {
				delete(checked.Objects, key)
				broken = append(broken, archive.BrokenObject{Key: key, Error: err.Error()})
			}
		})
		if err != nil {
			return rep, err
		}
		rep.PacksRead = n
	} else {
		checked.Blocks = prev.Blocks // kept for the next --deep
	}
	for tli, err := range inv.historyErrs {
		key := a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli})
		if errors.Is(err, errkind.ErrKey) {
			rep.Skipped = append(rep.Skipped, key+": encrypted; timelines checked by name only")
			continue
		}
		add(key, err)
	}
	if err := inv.Histories.CheckWith(inv.StandIns()); err != nil {
		add(a.Name+"/wal/*.history", err)
	}
	reported := map[uint32]bool{} // timelines under a dead-branch problem already
	for _, f := range inv.Forks() {
		key := a.Layout.WAL(wal.Name{Kind: wal.History, TLI: f.Child})
		if f.DeadChild || f.Both {
			for t := range inv.Histories {
				if inv.Histories.descends(t, f.Child) {
					reported[t] = true
				}
			}
			add(key, fmt.Errorf("%w: %s", ErrDeadBranch, f))
		} else {
			rep.Warnings = append(rep.Warnings, f.String())
		}
	}
	for _, q := range inv.Quarantined {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s (sha256 %s) is in quarantine since %s: set aside, not served (walstored unquarantine puts it back)", q.Name, q.SHA256[:12], q.At.Format("2006-01-02 15:04:05Z07:00")))
	}
	for id := range inv.Backups.Unreadable {
		rep.Skipped = append(rep.Skipped, "backup "+id+": its completion record is encrypted; give the archive's key to check it")
	}
	sort.Strings(rep.Skipped)
	for _, r := range inv.Backups.Complete {
		if err := checkBackup(ctx, a, inv, r); err != nil {
			if errors.Is(err, errkind.ErrKey) {
				rep.Skipped = append(rep.Skipped, "backup "+r.ID+": its encrypted .backup label was not read")
			} else {
				add(a.Layout.Backup(r.ID, ""), err)
				continue
			}
		}
		p, err := inv.Continuity(r)
		if err != nil {
			var gap *GapError
			key := a.Layout.Backup(r.ID, "")
			if errors.As(err, &gap) {
				key = a.Layout.WAL(gap.Missing)
			}
			add(key, err)
			continue
		}
		rep.Paths = append(rep.Paths, p)
	}
	if n := len(inv.Backups.Complete); n > 0 {
		newest := inv.Backups.Complete[n-1]
		if tli, ok := inv.PostgresLatest(newest); ok {
			// A retired timeline's number is a hole PostgreSQL's probe for
			// history files stops at: a later branch behind it is missed.
			want, amb, err := inv.ChooseTimeline(newest)
			if err == nil && len(amb) == 0 && want != tli && inv.dead()[tli] && !reported[tli] {
				add(a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli}), fmt.Errorf("%w: PostgreSQL's default recovery (recovery_target_timeline = 'latest') from the newest backup %s would follow timeline %d, which forked from an abandoned part of its parent; walfetch restore follows timeline %d itself, but retire timeline %d", ErrDeadBranch, newest.ID, tli, want, tli))
			}
			if err == nil && len(amb) == 0 && want > tli {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("PostgreSQL's default recovery (recovery_target_timeline = 'latest') from the newest backup %s would stop at timeline %d and miss timeline %d (it looks for history files one number at a time, and timeline %d's is not there): walfetch restore names timeline %d itself; by hand, set recovery_target_timeline = %d", newest.ID, tli, want, tli+1, want, want))
			}
		} else {
			add(a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli}), fmt.Errorf("%w: PostgreSQL's default recovery (recovery_target_timeline = 'latest') from the newest backup %s would pick timeline %d, which does not contain the backup's start on timeline %d, and refuse to start; walfetch restore names the right timeline itself, but retire the dead branch", ErrDeadBranch, newest.ID, tli, newest.StartTLI))
		}
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Key < rep.Problems[j].Key })
	rep.OK = len(rep.Problems) == 0
	record()
	return rep, nil
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Jobs   int  // objects read at once
	Full   bool // read every object, not only what is new since the last run
	Deep   bool // also check every block every backup lists (see deepCheck)
	Record bool // record what passed and what did not (needs write access)
}

// ErrDeadBranch: a branch of the archive's history that recovery must not
// follow is in its way.
var ErrDeadBranch = errors.New("dead branch")

// verifyObject reads an object through its checks: the raw SHA-256 for
// plain objects and, for encrypted ones, the payload checksum without the
// key or a full decryption with it.
//
// A segment or .partial file whose content can be read is also read as
// PostgreSQL's reader reads it (wal.SegmentChecker, the door's check): its
// summary is returned for the checks across segment boundaries.
func verifyObject(ctx context.Context, a *archive.Archive, key string) (int64, *wal.SegmentSummary, error) {
	rc, err := a.Store.Get(ctx, key)
	if err != nil {
		return 0, nil, err
	}
	defer rc.Close()
	hdr, err := envelope.ReadHeader(rc)
	if err == nil {
		err = hdr.CheckName(archive.Identity(key))
	}
	if err != nil {
		return hdr.RawSize, nil, err
	}
	k, kerr := archive.ParseKey(key)
	if kerr != nil || k.Kind != archive.KindWAL || (k.WAL.Kind != wal.Segment && k.WAL.Kind != wal.Partial) {
		return hdr.RawSize, nil, envelope.VerifyPayload(hdr, rc, a.Keys)
	}
	chk := &countingChecker{c: wal.NewSegmentChecker(k.WAL, hdr.RawSize, hdr.SystemID)}
	if err := envelope.VerifyPayloadTo(hdr, rc, a.Keys, chk); err != nil {
		return hdr.RawSize, nil, err
	}
	if chk.n == 0 {
		return hdr.RawSize, nil, nil // encrypted, and no key to read it
	}
	sum, err := chk.c.Close()
	if err != nil {
		return hdr.RawSize, nil, fmt.Errorf("%w: recovery could not replay it: %v", errkind.ErrCorrupt, err)
	}
	return hdr.RawSize, &sum, nil
}

type countingChecker struct {
	c *wal.SegmentChecker
	n int64
}

func (cc *countingChecker) Write(p []byte) (int, error) {
	cc.n += int64(len(p))
	return cc.c.Write(p)
}

// checkBoundaries checks what recovery reads across the boundary of two
// consecutive segments of one timeline: a record that runs past the end of
// one must be what the next one's first page says it continues (flag and
// length), and the first record that begins in the next one must link
// back to the last one that began before it (PostgreSQL: "invalid
// contrecord length", "record with incorrect prev-link"). A first page
// that overwrites a torn record (recovery after a crash) is PostgreSQL's
// own repair, and is not compared.
func checkBoundaries(a *archive.Archive, segs map[wal.Name]wal.SegmentSummary, segSize int64, add func(string, error)) {
	for n, next := range segs {
		if n.Kind != wal.Segment || n.Seg == 0 && n.Log == 0 {
			continue
		}
		prevName := wal.SegmentName(n.TLI, n.SegNo(segSize)-1, segSize)
		prev, ok := segs[prevName]
		if !ok || next.FirstOverwrites || next.Header.SegmentSize != prev.Header.SegmentSize {
			continue
		}
		switch {
		case prev.Carry != next.FirstRemLen:
			add(a.Layout.WAL(n), fmt.Errorf("%w: recovery could not read on from %s: a record %d bytes of which run past its end, but this segment's first page continues %d", errkind.ErrCorrupt, prevName, prev.Carry, next.FirstRemLen))
		case next.FirstPrev != 0 && prev.LastStart != 0 && next.FirstPrev != prev.LastStart:
			add(a.Layout.WAL(n), fmt.Errorf("%w: recovery could not read on from %s: its first record links back to %s, but the last record of %s begins at %s (is one of the two from another server's history?)", errkind.ErrCorrupt, prevName, next.FirstPrev, prevName, prev.LastStart))
		}
	}
}

// checkBackup checks that a completed backup's objects and label exist.
func checkBackup(ctx context.Context, a *archive.Archive, inv *Inventory, r archive.Record) error {
	for _, p := range r.Parts {
		if _, err := a.Store.Stat(ctx, a.Layout.Backup(r.ID, p.Name)); err != nil {
			return fmt.Errorf("backup %s: part %s: %w", r.ID, p.Name, err)
		}
	}
	if r.Format == archive.FormatBlocks {
		c, err := a.ReadContents(ctx, r.ID)
		if err != nil {
			return err
		}
		files := 0
		for _, e := range c.Entries {
			if !e.Dir && e.Link == "" {
				files++
			}
		}
		if files != r.Files {
			return fmt.Errorf("backup %s: %w: its contents list %d files, its record %d", r.ID, errkind.ErrCorrupt, files, r.Files)
		}
		for _, p := range c.Packs {
			if _, err := a.Store.Stat(ctx, a.Layout.Pack(p)); err != nil {
				return fmt.Errorf("backup %s: pack %s, which it uses: %w", r.ID, p, err)
			}
		}
	}
	if r.FromStandby && r.BackupFile == "" {
		// No .backup file: its label and manifest vouch for it.
		_, err := a.CheckRecord(ctx, r)
		return err
	}
	bf, err := wal.ParseName(r.BackupFile)
	if err != nil {
		return fmt.Errorf("backup %s: %w", r.ID, err)
	}
	if !inv.Has(bf) {
		return fmt.Errorf("backup %s: its backup history file %s is missing: %w", r.ID, bf, errkind.ErrNotFound)
	}
	if _, err := a.ReadBackupFile(ctx, bf); err != nil {
		return fmt.Errorf("backup %s: %w", r.ID, err)
	}
	return nil
}
