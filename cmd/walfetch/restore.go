package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/internal/cli"
)

const restoreSynopsis = `walfetch restore --backup latest|ID --pgdata DIR [--target-time T | --target-lsn L | --target-xid X | --target-name N] [--standby] [--tablespace-mapping OLD=NEW] [flags]`

// runRestore is "walfetch restore": a base backup laid into an empty
// PGDATA, set up to recover from the same archive.
func runRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("walfetch restore", pflag.ContinueOnError)
	c, opt, asJSON, role := bindRestore(fs, getenv)
	err := cli.Parse(fs, args, getenv, "walfetch", fetchFlagSet())
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stdout, restoreSynopsis, fs)
		return cli.ExitOK
	}
	if err == nil && fs.NArg() != 0 {
		err = fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	if err == nil && *role != "" {
		switch *role {
		case "replica":
			opt.Standby = true
		default:
			err = fmt.Errorf("%w: --role %q: Patroni asks walfetch restore for a replica only", cli.ErrUsage, *role)
		}
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
		opt.RestoreCommand, err = restoreCommand(fs, getenv, *c, opt.Wait)
	}
	if err == nil {
		opt.Archive, err = c.OpenArchive(ctx)
	}
	if err == nil {
		// A typo in --archive names the archives there are, rather than
		// "no completed backup".
		var ok bool
		if ok, err = opt.Archive.Exists(ctx); err == nil && !ok {
			names, _ := archive.Archives(ctx, opt.Archive.Store)
			have := "none yet"
			if len(names) > 0 {
				have = strings.Join(names, ", ")
			}
			err = fmt.Errorf("%w: archive %s does not exist (the repository's archives: %s)", errkind.ErrNotFound, opt.Archive.Name, have)
		}
	}
	var res backupset.RestoreResult
	if err == nil {
		opt.Out = stdout
		if *asJSON {
			opt.Out = io.Discard
		}
		opt.Terminal = cli.IsTerminal(stderr)
		res, err = backupset.Restore(ctx, *opt)
	}
	if err != nil {
		fmt.Fprintf(stderr, "walfetch restore: archive %s: %s\n", c.Archive, cli.OneLine(err))
		return cli.ExitCode(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	}
	return cli.ExitOK
}

// bindRestore adds walfetch restore's flags to fs.
func bindRestore(fs *pflag.FlagSet, getenv func(string) string) (c *cli.Common, opt *backupset.RestoreOptions, asJSON *bool, patroniRole *string) {
	c = &cli.Common{Getenv: getenv, ReadOnly: true, FailFastFirst: true}
	c.Bind(fs)
	opt = &backupset.RestoreOptions{}
	fs.StringVar(&opt.Backup, "backup", "latest", "backup id, or latest (the newest that ended before the target)")
	fs.StringVar(&opt.PGData, "pgdata", "", "data directory to restore into: must not exist or be empty (with --delta: this cluster's, stopped)")
	fs.StringVar(&opt.Target.Time, "target-time", "", "recover up to this time (with its zone, e.g. \"2026-11-24 07:30:00+00\")")
	fs.StringVar(&opt.Target.LSN, "target-lsn", "", "recover up to this WAL position")
	fs.StringVar(&opt.Target.XID, "target-xid", "", "recover up to this transaction")
	fs.StringVar(&opt.Target.Name, "target-name", "", "recover up to this restore point (pg_create_restore_point)")
	fs.StringVar(&opt.Target.Action, "target-action", "promote", "at the target: promote, pause or shutdown")
	fs.StringVar(&opt.Target.Timeline, "target-timeline", "", "timeline to follow: latest (PostgreSQL's default), current or a number")
	fs.BoolVar(&opt.StripCommands, "strip-commands", false, "comment out every setting of the restored configuration that runs a command or loads code (archive_command, *_preload_libraries, include, ...)")
	fs.StringArrayVar(&opt.ConfigPathMapping, "config-path-mapping", nil, "OLD=NEW: a path setting of the restored configuration (hba_file, ident_file, log_directory, ...) under OLD points under NEW instead (repeat for each; absolute paths)")
	fs.StringVar(&opt.ArchiveMode, "archive-mode", "preserve", "preserve: the copy archives as the backup's settings say; off: archive_mode = off, for a copy made to get data back (it never archives into the live archive)")
	fs.BoolVar(&opt.Standby, "standby", false, "create standby.signal: become an archive-fed standby instead of recovering and opening")
	fs.DurationVar(&opt.Wait, "wait", 0, "with --standby: restore_command waits this long for a segment not archived yet (walfetch --wait), and PostgreSQL retries at once")
	fs.StringVar(&opt.Owner, "owner", "", "when run as root: the user to own the files (e.g. postgres)")
	fs.BoolVar(&opt.DryRun, "dry-run", false, "say what would be done, write nothing")
	fs.BoolVar(&opt.Delta, "delta", false, "restore over the existing data directory of this cluster (stopped), writing only the files that differ from the backup and removing the others")
	fs.IntVar(&opt.Jobs, "jobs", 4, "packs fetched, decompressed and written at once")
	fs.StringArrayVar(&opt.TablespaceMapping, "tablespace-mapping", nil, "OLD=NEW: restore the tablespace at OLD into NEW instead (repeat for each; absolute paths)")
	asJSON = fs.Bool("json", false, "print what was done as JSON")
	// Patroni calls a create_replica_methods entry with these (see the
	// README's Patroni section): --datadir is --pgdata, --role replica
	// makes a standby, --scope and --connstring say nothing walstore needs.
	fs.StringVar(&opt.PGData, "datadir", "", "the same as --pgdata (Patroni's replica-method argument)")
	patroniRole = fs.String("role", "", "Patroni's replica-method argument: replica restores a standby (as --standby)")
	fs.String("scope", "", "Patroni's replica-method argument (ignored)")
	fs.String("connstring", "", "Patroni's replica-method argument (ignored: a replica is built from the archive)")
	for _, f := range []string{"datadir", "role", "scope", "connstring"} {
		fs.MarkHidden(f)
	}
	return c, opt, asJSON, patroniRole
}

// restoreCommand is the restore_command written into the restored
// cluster: this walfetch binary, by absolute path, and either the config
// file the restore used (so that a later change there reaches the
// restored cluster) or the same repository, archive and credentials files
// (never a token itself).
func restoreCommand(fs *pflag.FlagSet, getenv func(string) string, c cli.Common, wait time.Duration) (string, error) {
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
	s := backupset.CommandSettings{WalFetch: exe, Wait: wait}
	cfg := c.Config
	if cfg == "" {
		cfg = getenv("WALSTORE_CONFIG")
	}
	if cfg != "" {
		s.Config = cfg
		if fs.Changed("archive") {
			s.Archive = c.Archive
		}
		return backupset.RestoreCommand(s), nil
	}
	s.Repo, s.Archive, s.TokenFile, s.CACert, s.ClientCert, s.ClientKey = repo, c.Archive, c.TokenFile, c.CACert, c.ClientCert, c.ClientKey
	s.KeyFile, s.PassphraseFile, s.OldKeyFiles = c.KeyFile, c.PassphraseFile, c.OldKeyFiles
	return backupset.RestoreCommand(s), nil
}
