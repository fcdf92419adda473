package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/server/stores"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/multistore"
)

// openStores opens every --store (server/stores), as the commands open
// a repository (the environment's credentials).
func openStores(ctx context.Context, getenv func(string) string, urls []string, quorum int, cacheBytes int64, log *slog.Logger, onCorrupt func(store, key string, err error)) (store.Store, *multistore.Store, error) {
	return stores.Open(ctx, urls, stores.Options{
		Default: DefaultStore, Quorum: quorum, CacheBytes: cacheBytes, Log: log, OnCorrupt: onCorrupt,
		Open: func(ctx context.Context, u string, checkMarker bool) (store.Store, error) {
			c := cli.Common{Getenv: getenv, Repo: u}
			return c.OpenRaw(ctx, checkMarker)
		},
	})
}

// bindSync is "walstored sync": one repair pass over the given stores.
func bindSync(fs *pflag.FlagSet, e env) func(context.Context) error {
	var urls []string
	fs.StringArrayVar(&urls, "store", nil, "a store to keep in step (give --store at least twice, as for serve)")
	fs.String("config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	prefix := fs.String("prefix", "", "only objects under this prefix (e.g. an archive: main/)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context) error {
		if len(urls) < 2 {
			return fmt.Errorf("%w: give --store at least twice", cli.ErrUsage)
		}
		if err := store.ValidPrefix(*prefix); err != nil {
			return fmt.Errorf("%w: --prefix: %v", cli.ErrUsage, err)
		}
		_, ms, err := openStores(ctx, e.getenv, urls, 0, 0, nil, nil)
		if err != nil {
			return err
		}
		rep, err := stores.LeasedSync(ctx, ms, *prefix, time.Hour)
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
