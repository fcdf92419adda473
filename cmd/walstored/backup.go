package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/internal/cli"
)

func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored backup", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, NoCache: true}
	c.Bind(fs)
	opt := backupset.TakeOptions{}
	fs.StringVar(&opt.ConnInfo, "pg", "", "connection to the cluster: libpq keyword/value or URL, a user allowed replication (env WALSTORE_PG)")
	fs.StringVar(&opt.PGBaseBackup, "pg-basebackup", "", "pg_basebackup binary (default: the one of the server's major version)")
	fs.BoolVar(&opt.SkipArchiveCommandCheck, "skip-archive-command-check", false, "accept an archive_command that does not name --archive itself (settings from env or config file)")
	fs.IntVar(&opt.Jobs, "jobs", 3, "parts compressed and uploaded at once")
	fs.DurationVar(&opt.WALTimeout, "wal-timeout", 0, "how long to wait for the backup's WAL to be archived (default 5m)")
	if err := parse(fs, args, getenv, stderr, "walstored backup --repo URL --archive A --pg CONNINFO [flags]"); err != nil {
		return err
	}
	if opt.ConnInfo == "" {
		return fmt.Errorf("%w: --pg is required (for example --pg \"host=db1 user=postgres\")", cli.ErrUsage)
	}
	a, err := openChecked(ctx, &c)
	if err != nil {
		return err
	}
	opt.Archive = a
	opt.Terminal = cli.IsTerminal(stderr)
	opt.Progress = stdout
	if opt.Terminal {
		opt.Progress = stderr
	}
	_, err = backupset.Take(ctx, opt)
	return err
}
