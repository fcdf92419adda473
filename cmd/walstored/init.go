package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/storeurl"
)

// runInit is "walstored init": mark a store as a walstore repository (the
// one thing clients never do themselves), creating a file store's
// directory if needed.
func runInit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored init", pflag.ContinueOnError)
	var stores []string
	fs.StringArrayVar(&stores, "store", nil, "the store to make a repository of: file:///dir or s3://bucket/prefix?endpoint=host:port (give it again for several)")
	var config string
	fs.StringVar(&config, "config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := parse(fs, args, getenv, stderr, "walstored init --store URL"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if len(stores) == 0 {
		return fmt.Errorf("%w: --store is required", cli.ErrUsage)
	}
	for _, u := range stores {
		if err := storeurl.Check(u); err != nil || strings.HasPrefix(u, "http") {
			return fmt.Errorf("%w: --store %s: want file:///dir or s3://bucket/prefix", cli.ErrUsage, u)
		}
		if strings.HasPrefix(u, "file://") {
			dir, _ := storeurl.FilePath(strings.TrimPrefix(u, "file://"))
			if _, err := filestore.Open(dir, filestore.Options{Create: true}); err != nil {
				return err
			}
		}
		c := cli.Common{Getenv: getenv, Repo: u}
		s, err := c.OpenRaw(ctx, false)
		if err != nil {
			return err
		}
		created, err := archive.InitRepository(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: %w", u, err)
		}
		if created {
			fmt.Fprintf(stdout, "%s is now a walstore repository\n", u)
		} else {
			fmt.Fprintf(stdout, "%s already is a walstore repository\n", u)
		}
	}
	return nil
}
