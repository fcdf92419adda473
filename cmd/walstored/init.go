package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/store/storeurl"
)

// bindInit is "walstored init": mark a store as a walstore repository (the
// one thing clients never do themselves), creating a file store's
// directory if needed.
func bindInit(fs *pflag.FlagSet, e env) func(context.Context) error {
	var stores []string
	fs.StringArrayVar(&stores, "store", nil, "the store to make a repository of: file:///dir or s3://bucket/prefix?endpoint=host:port (give it again for several)")
	fs.String("config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	return func(ctx context.Context) error {
		if len(stores) == 0 {
			return fmt.Errorf("%w: --store is required", cli.ErrUsage)
		}
		for _, u := range stores {
			if err := storeurl.Create(ctx, u); err != nil {
				return fmt.Errorf("%w: --store %s: %v", cli.ErrUsage, u, err)
			}
			c := cli.Common{Getenv: e.getenv, Repo: u}
			s, err := c.OpenRaw(ctx, false)
			if err != nil {
				return err
			}
			created, err := archive.InitRepository(ctx, s)
			if err != nil {
				return fmt.Errorf("%s: %w", u, err)
			}
			if created {
				fmt.Fprintf(e.stdout, "%s is now a walstore repository\n", u)
			} else {
				fmt.Fprintf(e.stdout, "%s already is a walstore repository\n", u)
			}
		}
		return nil
	}
}
