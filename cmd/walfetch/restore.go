package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/internal/cli"
)

const restoreSynopsis = `walfetch restore --backup latest|ID --pgdata DIR [--target-time T | --target-lsn L | --target-xid X | --target-name N] [--standby] [flags]`

// runRestore is "walfetch restore": a base backup laid into an empty
// PGDATA, set up to recover from the same archive.
func runRestore(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("walfetch restore", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, ReadOnly: true}
	c.Bind(fs)
	var opt backupset.RestoreOptions
	fs.StringVar(&opt.Backup, "backup", "latest", "backup id, or latest (the newest that ended before the target)")
	fs.StringVar(&opt.PGData, "pgdata", "", "data directory to restore into: must not exist or be empty")
	fs.StringVar(&opt.Target.Time, "target-time", "", "recover up to this time (with its zone, e.g. \"2026-11-24 07:30:00+00\")")
	fs.StringVar(&opt.Target.LSN, "target-lsn", "", "recover up to this WAL position")
	fs.StringVar(&opt.Target.XID, "target-xid", "", "recover up to this transaction")
	fs.StringVar(&opt.Target.Name, "target-name", "", "recover up to this restore point (pg_create_restore_point)")
	fs.StringVar(&opt.Target.Action, "target-action", "promote", "at the target: promote, pause or shutdown")
	fs.StringVar(&opt.Target.Timeline, "target-timeline", "", "timeline to follow: latest (PostgreSQL's default), current or a number")
	fs.BoolVar(&opt.Standby, "standby", false, "create standby.signal: become an archive-fed standby instead of recovering and opening")
	fs.DurationVar(&opt.Wait, "wait", 0, "with --standby: restore_command waits this long for a segment not archived yet (walfetch --wait), and PostgreSQL retries at once")
	fs.StringVar(&opt.Owner, "owner", "", "when run as root: the user to own the files (e.g. postgres)")
	fs.BoolVar(&opt.DryRun, "dry-run", false, "say what would be done, write nothing")
	fs.IntVar(&opt.Jobs, "jobs", 4, "backup parts fetched and decompressed at once")
	err := cli.Parse(fs, args, getenv, "walfetch")
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stderr, restoreSynopsis, fs)
		return cli.ExitOK
	}
	if err == nil && fs.NArg() != 0 {
		err = fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	if err == nil && opt.PGData == "" {
		err = fmt.Errorf("%w: --pgdata DIR is required", cli.ErrUsage)
	}
	if err == nil && opt.Wait != 0 && (!opt.Standby || opt.Wait < 0 || opt.Wait > 30*time.Second) {
		err = fmt.Errorf("%w: --wait goes with --standby, from 1s to 30s", cli.ErrUsage)
	}
	if err == nil {
		err = c.Check()
	}
	if err == nil {
		opt.RestoreCommand, err = restoreCommand(fs, c)
	}
	if err == nil {
		opt.Archive, err = c.OpenArchive(ctx)
	}
	if err == nil {
		opt.Out = os.Stdout
		opt.Terminal = cli.IsTerminal(stderr)
		_, err = backupset.Restore(ctx, opt)
	}
	if err != nil {
		fmt.Fprintf(stderr, "walfetch restore: archive %s: %s\n", c.Archive, cli.OneLine(err))
		return cli.ExitCode(err)
	}
	return cli.ExitOK
}

// restoreCommand is the restore_command written into the restored
// cluster: this walfetch binary, by absolute path, with the same
// repository, archive and credentials files (never a token itself).
func restoreCommand(fs *pflag.FlagSet, c cli.Common) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", err
	}
	repo, err := c.RepoURL()
	if err != nil {
		return "", err
	}
	words := []string{exe, "--repo", repo, "--archive", c.Archive}
	if w := fs.Lookup("wait").Value.String(); w != "0s" && fs.Changed("wait") {
		words = append(words, "--wait", w)
	}
	for _, name := range []string{"token-file", "cacert", "client-cert", "client-key", "config", "encryption-key-file", "encryption-passphrase-file", "decryption-key-files"} {
		if v := fs.Lookup(name).Value.String(); v != "" {
			var files []string
			for _, f := range strings.Split(v, ",") {
				if abs, err := filepath.Abs(f); err == nil {
					f = abs
				}
				files = append(files, f)
			}
			words = append(words, "--"+name, strings.Join(files, ","))
		}
	}
	for i, w := range words {
		words[i] = backupset.ShellQuote(w)
	}
	return strings.Join(words, " ") + " %f %p", nil
}
