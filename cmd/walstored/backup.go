package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/backupset/take"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
)

func bindBackup(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	opt := take.Options{}
	fs.StringVar(&opt.ConnInfo, "pg", "", "connection to the cluster: libpq keyword/value or URL, a user allowed replication (env WALSTORE_PG)")
	fs.StringVar(&opt.PGBaseBackup, "pg-basebackup", "", "pg_basebackup binary (default: the one of the server's major version)")
	fs.BoolVar(&opt.SkipArchiveCommandCheck, "skip-archive-command-check", false, "accept an archive_command whose archive cannot be read from it (settings from the environment)")
	fs.IntVar(&opt.Jobs, "jobs", 3, "packs compressed and uploaded at once")
	fs.StringVar(&opt.PGData, "pgdata", "", "read the files here, on the database host (pg_backup_start/stop over --pg; tablespaces, page checksums, parallel reads) instead of through pg_basebackup")
	fs.IntVar(&opt.Readers, "readers", 4, "with --pgdata: files read at once")
	fs.BoolVar(&opt.FullRead, "full-read", false, "with --pgdata: read every file, also those the newest backup holds unchanged (same size, times and inode, not modified in the minute before it began), which are otherwise taken from it unread")
	fs.BoolVar(&opt.AcceptBadChecksums, "accept-bad-checksums", false, "with --pgdata: store the backup even if pages fail their checksum (listed in its record as bad_pages)")
	fs.DurationVar(&opt.WALTimeout, "wal-timeout", 0, "how long to wait for the backup's WAL to be archived (default 5m)")
	asJSON := fs.Bool("json", false, "print the completion record as JSON")
	return func(ctx context.Context) error {
		if opt.ConnInfo == "" {
			return fmt.Errorf("%w: --pg is required (for example --pg \"host=db1 user=postgres\")", cli.ErrUsage)
		}
		if opt.Readers < 1 || opt.Readers > 64 {
			return fmt.Errorf("%w: --readers %d: want 1 to 64", cli.ErrUsage, opt.Readers)
		}
		if opt.PGData == "" && (fs.Changed("readers") || opt.AcceptBadChecksums || opt.FullRead) {
			return fmt.Errorf("%w: --readers, --full-read and --accept-bad-checksums need --pgdata (the local reader)", cli.ErrUsage)
		}
		// The first backup of a new cluster may come before its first
		// segment: a typo in --archive is caught by the archive_command
		// check, and failing that by the wait for the backup's WAL.
		a, err := openArchive(ctx, &c, true)
		if err != nil {
			return err
		}
		opt.Archive = a
		if opt.PGData != "" {
			// The seal key of this host: without it every file is read.
			keyPath := filepath.Join(worker.StateDir(opt.PGData), take.SealKeyFile)
			key, err := take.LoadSealKey(keyPath, opt.PGData)
			if errors.Is(err, errkind.ErrConfig) {
				return err
			}
			if err != nil {
				fmt.Fprintf(e.stderr, "walstored backup: WARNING cannot read or make the seal key %s (%s): every file is read\n", keyPath, cli.OneLine(err))
			}
			opt.SealKey = key
		}
		opt.Terminal = cli.IsTerminal(e.stderr)
		opt.Progress = e.stdout
		opt.Warn = e.stderr
		if opt.Terminal || *asJSON {
			opt.Progress = e.stderr
		}
		rec, err := take.Take(ctx, opt)
		if err != nil {
			return err
		}
		if *asJSON {
			return admin.JSON(e.stdout, rec)
		}
		return nil
	}
}
