// Package stores is the set of stores walstored fronts: opened from their
// URLs (the embedded default made on first start; a store down at start
// opened later), composed with walstored's layers (several kept in step
// with a quorum, a cache), and kept in step by sync passes under the
// repository's sync lease.
package stores

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/lazystore"
	"github.com/walstore/walstore/store/multistore"
	"github.com/walstore/walstore/store/storeurl"
)

// Options are what Open needs beyond the URLs.
type Options struct {
	// Default is the store used when no URL is given, made (a directory
	// and a repository) on first start.
	Default string
	Quorum  int
	// CacheBytes is walstored's read cache (0: none); packs are not kept.
	CacheBytes int64
	Log        *slog.Logger
	// OnCorrupt is told of every corrupt copy a multistore finds.
	OnCorrupt func(store, key string, err error)
	// Open opens one URL as the commands do (with the environment's
	// credentials; checkMarker: it must be a walstore repository):
	// internal/cli's OpenRaw.
	Open func(ctx context.Context, url string, checkMarker bool) (store.Store, error)
}

// Open opens the stores at urls and composes them (storeurl.Compose).
// Each must be a walstore repository (walstored init makes one); only
// the default is created when missing. With several, one that cannot
// be reached at start is opened on first use (lazystore): the others
// serve meanwhile.
func Open(ctx context.Context, urls []string, opt Options) (store.Store, *multistore.Store, error) {
	if len(urls) == 0 {
		urls = []string{opt.Default}
		if err := initDefault(ctx, opt); err != nil {
			return nil, nil, err
		}
	}
	var members []multistore.Member
	for _, u := range urls {
		if _, err := storeurl.Storage(u); err != nil {
			return nil, nil, fmt.Errorf("%w: --store: %v", errkind.ErrConfig, err)
		}
		wait := 30 * time.Second
		if len(urls) > 1 {
			wait = 5 * time.Second // the others can serve meanwhile
		}
		octx, cancel := context.WithTimeout(ctx, wait)
		s, err := opt.Open(octx, u, true)
		cancel()
		if err != nil && len(urls) > 1 && !errkind.Permanent(err) {
			if opt.Log != nil {
				opt.Log.Warn("store not reachable at start; walstored starts without it and keeps trying", "store", u, "error", err.Error())
			}
			open := func(ctx context.Context) (store.Store, error) { return opt.Open(ctx, u, true) }
			s, err = lazystore.New(u, open, err, 0), nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("--store %s: %w", u, err)
		}
		if sw, ok := store.As[sweeper](s); ok && opt.Log != nil {
			if n, err := sw.SweepTemp(time.Hour); err == nil && n > 0 {
				opt.Log.Warn("removed temporary files left by an interrupted write", "store", u, "count", n)
			}
		}
		members = append(members, multistore.Member{Name: store.Describe(s), Store: s})
	}
	st, ms, err := storeurl.Compose(members, storeurl.Layers{
		Multi: multistore.Options{
			Quorum: opt.Quorum, Log: opt.Log, OnCorrupt: opt.OnCorrupt,
			Identity: archive.Identify, Verify: archive.VerifyCopy, Local: archive.StoreLocal,
		},
		CacheBytes: opt.CacheBytes,
		CacheAdmit: func(key string) bool { return !archive.IsPack(key) },
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: --quorum: %v", errkind.ErrConfig, err)
	}
	return st, ms, nil
}

// sweeper is a store that can remove what crashed writers left behind
// (the file store).
type sweeper interface {
	SweepTemp(age time.Duration) (int, error)
}

// initDefault makes the default repository on first start.
func initDefault(ctx context.Context, opt Options) error {
	if err := storeurl.Create(ctx, opt.Default); err != nil {
		return err
	}
	s, err := opt.Open(ctx, opt.Default, false)
	if err != nil {
		return err
	}
	_, err = archive.InitRepository(ctx, s)
	return err
}

// SyncLoop repairs the stores every interval until ctx ends, one pass at
// start.
func SyncLoop(ctx context.Context, ms *multistore.Store, every time.Duration, log *slog.Logger) {
	pass := func() {
		rep, err := LeasedSync(ctx, ms, "", every)
		if err != nil {
			log.Warn("store sync failed or skipped; next try in one interval", "error", err.Error())
			return
		}
		LogSync(log, rep)
	}
	pass()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pass()
	}
}

// LeasedSync is one sync pass under the repository's sync lease (in the
// first store that answers), so that the syncs of several walstored
// instances and of walstored sync never run at once. The lease expires
// after ttl (or at ctx's deadline) should this process die holding it.
func LeasedSync(ctx context.Context, ms *multistore.Store, prefix string, ttl time.Duration) (multistore.SyncReport, error) {
	if dl, ok := ctx.Deadline(); ok {
		ttl = time.Until(dl)
	}
	var members []store.Store
	for _, m := range ms.Members() {
		members = append(members, m.Store)
	}
	lease, err := archive.TakeLeaseInFirst(ctx, members, archive.SyncLeaseKey, "store sync", max(ttl, time.Minute))
	if err != nil {
		return multistore.SyncReport{}, err
	}
	defer lease.Release(context.WithoutCancel(ctx))
	return ms.Sync(ctx, prefix)
}

// LogSync logs a sync pass: one line, and one per problem.
func LogSync(log *slog.Logger, rep multistore.SyncReport) {
	level := slog.LevelInfo
	if len(rep.Conflicts) > 0 || len(rep.Corrupt) > 0 || len(rep.Failed) > 0 {
		level = slog.LevelError
	}
	copied := 0
	for _, n := range rep.Copied {
		copied += n
	}
	log.Log(context.Background(), level, "store sync", "objects", rep.Objects, "copied", copied, "bytes", rep.Bytes,
		"conflicts", len(rep.Conflicts), "corrupt", len(rep.Corrupt), "failed", len(rep.Failed))
	for _, c := range rep.Conflicts {
		log.Error("stores disagree on an object; left as is", "conflict", c.String())
	}
	for _, c := range rep.Corrupt {
		log.Error("corrupt copy in a store", "copy", c)
	}
}
