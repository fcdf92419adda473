package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Problem is one thing verify found wrong.
type Problem struct {
	Key string
	Err error
}

func (p Problem) String() string { return fmt.Sprintf("%s: %v", p.Key, p.Err) }

// Report is the outcome of Verify.
type Report struct {
	Objects  int
	Bytes    int64
	Problems []Problem // corrupt objects, broken backups, bad histories, gaps
	Paths    []Path    // recovery paths checked, one per backup
	Skipped  []string  // checks that need the archive's key, which was not given
}

// OK reports whether nothing was found wrong.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify reads every object of the archive and checks its SHA-256 (jobs
// at a time), checks that the history files parse and agree, that every
// completed backup has all its parts and its .backup file, and that WAL is
// continuous from each backup's start to the newest segment across
// timelines. Problems are collected, not returned as errors; the error is
// for failures to read the archive at all.
func Verify(ctx context.Context, a *archive.Archive, jobs int) (Report, error) {
	var rep Report
	inv, err := Load(ctx, a)
	if err != nil {
		return rep, err
	}
	var mu sync.Mutex
	add := func(key string, err error) {
		mu.Lock()
		rep.Problems = append(rep.Problems, Problem{Key: key, Err: err})
		mu.Unlock()
	}
	var keys []store.Info
	if err := a.Store.List(ctx, a.Name+"/", func(i store.Info) error { keys = append(keys, i); return nil }); err != nil {
		return rep, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, jobs))
	for _, k := range keys {
		g.Go(func() error {
			n, err := verifyObject(gctx, a, k.Key)
			if err != nil {
				if !errors.Is(err, archive.ErrCorrupt) && !errors.Is(err, archive.ErrNotFound) && gctx.Err() == nil {
					return fmt.Errorf("read %s: %w", k.Key, err)
				}
				add(k.Key, err)
			}
			mu.Lock()
			rep.Objects++
			rep.Bytes += n
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	for tli, err := range inv.historyErrs {
		key := a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli})
		if errors.Is(err, archive.ErrKey) {
			rep.Skipped = append(rep.Skipped, key+": encrypted; timelines checked by name only")
			continue
		}
		add(key, err)
	}
	if err := inv.Histories.Check(); err != nil {
		add(a.Name+"/wal/*.history", err)
	}
	for id := range inv.Backups.Unreadable {
		rep.Skipped = append(rep.Skipped, "backup "+id+": its completion record is encrypted; give the archive's key to check it")
	}
	sort.Strings(rep.Skipped)
	for _, r := range inv.Backups.Complete {
		if err := checkBackup(ctx, a, inv, r); err != nil {
			if errors.Is(err, archive.ErrKey) {
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
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Key < rep.Problems[j].Key })
	return rep, nil
}

// verifyObject reads an object through its checks: the raw SHA-256 for
// plain objects and, for encrypted ones, the payload checksum without the
// key or a full decryption with it.
func verifyObject(ctx context.Context, a *archive.Archive, key string) (int64, error) {
	rc, err := a.Store.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	hdr, err := envelope.Verify(rc, archive.Identity(key), a.Keys)
	return hdr.RawSize, err
}

// checkBackup checks that a completed backup's objects and label exist.
func checkBackup(ctx context.Context, a *archive.Archive, inv *Inventory, r archive.Record) error {
	for _, p := range r.Parts {
		if _, err := a.Store.Stat(ctx, a.Layout.Backup(r.ID, p.Name)); err != nil {
			return fmt.Errorf("backup %s: part %s: %w", r.ID, p.Name, err)
		}
	}
	bf, err := wal.ParseName(r.BackupFile)
	if err != nil {
		return fmt.Errorf("backup %s: %w", r.ID, err)
	}
	if !inv.Has(bf) {
		return fmt.Errorf("backup %s: its backup history file %s is missing: %w", r.ID, bf, archive.ErrNotFound)
	}
	if _, err := backupset.ReadBackupFile(ctx, a, bf); err != nil {
		return fmt.Errorf("backup %s: %w", r.ID, err)
	}
	return nil
}
