package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive/cachestore"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/cli"
	"github.com/walstore/walstore/server"
)

// DefaultStore is the embedded default: a directory next to the daemon.
const DefaultStore = "file://./walstore-data"

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored serve", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, DefaultRepo: DefaultStore}
	fs.StringVar(&c.Repo, "store", "", "store to serve: file:///dir or s3://bucket/prefix?endpoint=host:port (default "+DefaultStore+")")
	fs.StringVar(&c.Config, "config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	listen := fs.String("listen", "127.0.0.1:7480", "address to listen on")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	cacheSize := fs.String("cache-size", "256MiB", "memory for recently pushed and fetched objects (0 disables the cache)")
	if err := parse(fs, args, getenv, stderr, "walstored serve [flags]"); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q", cli.ErrUsage, *logLevel)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", cli.ErrUsage, *logFormat)
	}
	cacheBytes, err := cli.ParseSize(*cacheSize)
	if err != nil {
		return fmt.Errorf("%w: --cache-size: %v", cli.ErrUsage, err)
	}
	log := cli.ServerLogger(stderr, *logFormat, level)
	store, err := c.OpenStore(ctx)
	if err != nil {
		return err
	}
	if fsys, ok := store.(*filestore.Store); ok {
		if n, err := fsys.SweepTemp(time.Hour); err == nil && n > 0 {
			log.Warn("removed temporary files left by an interrupted write", "count", n)
		}
	}
	if cacheBytes > 0 {
		store = cachestore.New(store, cachestore.Options{MaxBytes: cacheBytes})
	}
	srv := server.New(server.Config{Store: store, Log: log})
	repo, _ := c.RepoURL()
	return server.Run(ctx, server.Listener{
		Addr: *listen,
		Log:  log,
		Ready: func(a net.Addr) {
			log.Info("walstored listening", "addr", a.String(), "store", repo)
		},
	}, srv)
}

// parse is cli.Parse plus the help and usage handling every subcommand
// shares.
func parse(fs *pflag.FlagSet, args []string, getenv func(string) string, stderr io.Writer, synopsis string) error {
	err := cli.Parse(fs, args, getenv, "walstored")
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stderr, synopsis, fs)
		return errHelp
	}
	if err == nil && fs.NArg() != 0 {
		err = fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	return err
}
