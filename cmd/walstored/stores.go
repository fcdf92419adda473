package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/lazystore"
	"github.com/walstore/walstore/store/multistore"
	"github.com/walstore/walstore/store/storeurl"
)

// openStores opens every --store; with more than one, they are combined
// into a multi-store with the given quorum. Each must be a walstore
// repository (walstored init makes one); only the embedded default is
// created when missing.
func openStores(ctx context.Context, getenv func(string) string, urls []string, quorum int, log *slog.Logger, onCorrupt func(store, key string, err error)) (store.Store, *multistore.Store, error) {
	if len(urls) == 0 {
		urls = []string{DefaultStore}
		if err := initDefault(ctx, getenv); err != nil {
			return nil, nil, err
		}
	}
	var members []multistore.Member
	for _, u := range urls {
		c := cli.Common{Getenv: getenv, Repo: u}
		if _, err := storeurl.Storage(u); err != nil {
			return nil, nil, fmt.Errorf("%w: --store: %v", cli.ErrUsage, err)
		}
		wait := 30 * time.Second
		if len(urls) > 1 {
			wait = 5 * time.Second // the others can serve meanwhile
		}
		octx, cancel := context.WithTimeout(ctx, wait)
		s, err := c.OpenRaw(octx, true)
		cancel()
		if err != nil && len(urls) > 1 && !errkind.Permanent(err) {
			// One store down at start: the others can still serve (the
			// write policy decides what a push needs); retry it on use.
			if log != nil {
				log.Warn("store not reachable at start; walstored starts without it and keeps trying", "store", u, "error", err.Error())
			}
			open := func(ctx context.Context) (store.Store, error) { return c.OpenRaw(ctx, true) }
			s, err = lazystore.New(u, open, err, 0), nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("--store %s: %w", u, err)
		}
		if sw, ok := store.As[sweeper](s); ok && log != nil {
			if n, err := sw.SweepTemp(time.Hour); err == nil && n > 0 {
				log.Warn("removed temporary files left by an interrupted write", "store", u, "count", n)
			}
		}
		members = append(members, multistore.Member{Name: store.Describe(s), Store: s})
	}
	if len(members) == 1 {
		if quorum > 1 {
			return nil, nil, fmt.Errorf("%w: --quorum %d with one store", cli.ErrUsage, quorum)
		}
		return members[0].Store, nil, nil
	}
	ms, err := multistore.New(members, multistore.Options{
		Quorum: quorum, Log: log, OnCorrupt: onCorrupt,
		Identity: archive.Identify, Verify: archive.VerifyCopy, Local: archive.StoreLocal,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	return ms, ms, nil
}

// sweeper is a store that can remove what crashed writers left behind
// (the file store).
type sweeper interface {
	SweepTemp(age time.Duration) (int, error)
}

// initDefault makes the embedded default repository on first start.
func initDefault(ctx context.Context, getenv func(string) string) error {
	if err := storeurl.Create(ctx, DefaultStore); err != nil {
		return err
	}
	c := cli.Common{Getenv: getenv, Repo: DefaultStore}
	s, err := c.OpenRaw(ctx, false)
	if err != nil {
		return err
	}
	_, err = archive.InitRepository(ctx, s)
	return err
}

// syncLoop repairs the stores every interval.
func syncLoop(ctx context.Context, ms *multistore.Store, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := leasedSync(ctx, ms, "", every)
		if err != nil {
			log.Warn("store sync failed or skipped; next try in one interval", "error", err.Error())
			continue
		}
		logSync(log, rep)
	}
}

// leasedSync is one sync pass under the repository's sync lease (in the
// first store that answers), so that the syncs of several walstored
// instances and of walstored sync never run at once. The lease expires
// after ttl (or at ctx's deadline) should this process die holding it.
func leasedSync(ctx context.Context, ms *multistore.Store, prefix string, ttl time.Duration) (multistore.SyncReport, error) {
	if dl, ok := ctx.Deadline(); ok {
		ttl = time.Until(dl)
	}
	var stores []store.Store
	for _, m := range ms.Members() {
		stores = append(stores, m.Store)
	}
	lease, err := archive.TakeLeaseInFirst(ctx, stores, archive.SyncLeaseKey, "store sync", max(ttl, time.Minute))
	if err != nil {
		return multistore.SyncReport{}, err
	}
	defer lease.Release(context.WithoutCancel(ctx))
	return ms.Sync(ctx, prefix)
}

func logSync(log *slog.Logger, rep multistore.SyncReport) {
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

// bindSync is "walstored sync": one repair pass over the given stores.
func bindSync(fs *pflag.FlagSet, e env) func(context.Context) error {
	var stores []string
	fs.StringArrayVar(&stores, "store", nil, "a store to keep in step (give --store at least twice, as for serve)")
	fs.String("config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	prefix := fs.String("prefix", "", "only objects under this prefix (e.g. an archive: main/)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context) error {
		if len(stores) < 2 {
			return fmt.Errorf("%w: give --store at least twice", cli.ErrUsage)
		}
		if err := store.ValidPrefix(*prefix); err != nil {
			return fmt.Errorf("%w: --prefix: %v", cli.ErrUsage, err)
		}
		_, ms, err := openStores(ctx, e.getenv, stores, 0, nil, nil)
		if err != nil {
			return err
		}
		rep, err := leasedSync(ctx, ms, *prefix, time.Hour)
		if err != nil {
			return err
		}
		err = printReport(e, *asJSON, rep, func() {
			var parts []string
			for name, n := range rep.Copied {
				parts = append(parts, fmt.Sprintf("%d into %s", n, name))
			}
			sort.Strings(parts)
			if len(parts) == 0 {
				parts = []string{"nothing to copy"}
			}
			fmt.Fprintf(e.stdout, "sync: %s; copied %s (%s)\n", admin.Count(rep.Objects, "object", "objects"), strings.Join(parts, ", "), admin.Size(rep.Bytes))
			for _, c := range rep.Conflicts {
				fmt.Fprintf(e.stdout, "  CONFLICT %s\n", c)
			}
			for _, c := range rep.Corrupt {
				fmt.Fprintf(e.stdout, "  CORRUPT %s\n", c)
			}
			for _, f := range rep.Failed {
				fmt.Fprintf(e.stdout, "  FAILED %s\n", f)
			}
		})
		if err != nil {
			return err
		}
		if n := len(rep.Conflicts) + len(rep.Corrupt) + len(rep.Failed); n > 0 {
			return &failedError{code: cli.ExitFailure, err: fmt.Errorf("%s between the stores (see above)", admin.Count(n, "problem", "problems"))}
		}
		return nil
	}
}
