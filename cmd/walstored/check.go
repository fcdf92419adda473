package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/backupset/take"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
)

// bindCheck is "walstored check": archiving from a cluster into an
// archive, checked end to end.
func bindCheck(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	conninfo := fs.String("pg", "", "connection to the cluster (a role that may call pg_switch_wal) (env WALSTORE_PG)")
	skip := fs.Bool("skip-archive-command-check", false, "accept an archive_command whose archive cannot be read from it")
	wait := fs.Duration("wait", time.Minute, "how long the switched segment may take to reach the archive")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context) error {
		if *conninfo == "" {
			return fmt.Errorf("%w: --pg is required", cli.ErrUsage)
		}
		a, err := openArchive(ctx, &c, true)
		if err != nil {
			return err
		}
		rep, err := take.CheckArchiving(ctx, a, *conninfo, *skip, *wait)
		if *asJSON {
			if jerr := admin.JSON(e.stdout, rep); jerr != nil {
				return jerr
			}
		} else {
			for _, w := range rep.Warnings {
				fmt.Fprintf(e.stderr, "WARNING %s\n", w)
			}
			if err == nil {
				fmt.Fprintf(e.stdout, "check of archive %s passed: %s archived %.2fs after the switch, read back and verified in %.2fs\n", a.Name, rep.Segment, rep.ArchivedSeconds, rep.FetchedSeconds)
			}
		}
		if err != nil {
			return fmt.Errorf("check of archive %s failed: %w", a.Name, err)
		}
		return nil
	}
}
