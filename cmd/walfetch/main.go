// Command walfetch is PostgreSQL's restore_command:
//
//	restore_command = 'walfetch --repo http://storage:7480 --archive main %f %p'
//
// It writes the archived file NAME to DEST, whole and verified, or exits 1
// if the archive does not have it. When it cannot get an answer it fails
// in a way PostgreSQL will not mistake for "not found" (see the README).
// "walfetch restore" lays a base backup into a data directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/fetch"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const synopsis = `walfetch [flags] NAME DEST
       walfetch restore --backup latest|ID --pgdata DIR [flags]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintln(stdout, version.String("walfetch"))
		return cli.ExitOK
	}
	if len(args) > 0 {
		switch args[0] {
		case "restore":
			return runRestore(ctx, args[1:], getenv, stdout, stderr)
		case "prefetch":
			return runPrefetcher(ctx, args[1:], getenv)
		}
	}
	fs := pflag.NewFlagSet("walfetch", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, ReadOnly: true}
	c.Bind(fs)
	cfg := bindFetch(fs)
	rfs := pflag.NewFlagSet("walfetch restore", pflag.ContinueOnError)
	bindRestore(rfs, getenv)
	err := cli.Parse(fs, args, getenv, "walfetch", rfs)
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stdout, synopsis, fs)
		return cli.ExitOK
	}
	if err == nil && fs.NArg() != 2 {
		err = fmt.Errorf("%w: want NAME and DEST (use %%f %%p in restore_command), got %d arguments", cli.ErrUsage, fs.NArg())
	}
	name, dest := fs.Arg(0), fs.Arg(1)
	mode := fetch.DetectMode(cfg.DataDir(dest))
	fail := func(err error) int {
		code := exitCode(err, mode)
		fmt.Fprintf(stderr, "walfetch: %s: archive %s: %s", name, c.Archive, cli.OneLine(err))
		if code == cli.ExitFatalRecovery {
			fmt.Fprintf(stderr, " (exit %d stops archive recovery instead of ending it early; fix the cause and start PostgreSQL again)", code)
		}
		fmt.Fprintln(stderr)
		return code
	}
	if err == nil {
		err = c.Check()
	}
	if err == nil && cfg.Timeout <= 0 {
		err = fmt.Errorf("%w: --timeout must be positive", cli.ErrUsage)
	}
	if err == nil && (cfg.Wait < 0 || cfg.Wait > 30*time.Second || cfg.Wait >= cfg.Timeout) {
		err = fmt.Errorf("%w: --wait %v: want 0 to 30s, and less than --timeout (it delays promotion and shutdown by as much)", cli.ErrUsage, cfg.Wait)
	}
	if err == nil && (cfg.Prefetch < 0 || cfg.Prefetch > 64) {
		err = fmt.Errorf("%w: --prefetch %d: want 0 to 64", cli.ErrUsage, cfg.Prefetch)
	}
	if err != nil {
		return fail(err)
	}
	// The deadline covers opening the repository too: nothing may hang.
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// Outside archive recovery, a walstored that refuses connections is
	// reported at once: PostgreSQL (a standby) or the operator tries again.
	// In archive recovery a failure stops PostgreSQL, so it is retried.
	c.FailFast = mode != fetch.ArchiveRecovery
	if filepath.Base(filepath.Dir(cli.AbsPath(dest))) == "pg_wal" {
		c.Cache = cli.OpenCache(worker.StateDir(filepath.Dir(filepath.Dir(cli.AbsPath(dest)))))
	}
	cfg.Open = c.Opener()
	cfg.Log = cli.Logger(stderr, c.Verbose)
	cfg.Spawn = func(spoolDir, pgdata string) error {
		return cli.SpawnDetached(fs, "prefetch", "--spool", spoolDir, "--pgdata", pgdata)
	}
	res, err := fetch.Fetch(ctx, *cfg, name, dest)
	if errors.Is(err, errkind.ErrNotFound) {
		if errors.Is(err, errkind.ErrExpired) {
			// Said every time: PostgreSQL's own line does not say why.
			fmt.Fprintf(stderr, "walfetch: %s\n", cli.OneLine(err))
		} else if c.Verbose {
			fmt.Fprintf(stderr, "walfetch: %s: archive %s: not found\n", name, c.Archive)
		}
		return cli.ExitFailure
	}
	if err != nil {
		return fail(err)
	}
	if c.Verbose {
		from := "archive"
		if res.FromSpool {
			from = "prefetch spool"
		}
		fmt.Fprintf(stderr, "walfetch: %s: archive %s: %d bytes from the %s to %s\n", res.Name, c.Archive, res.Size, from, dest)
	}
	return cli.ExitOK
}

// DefaultPrefetch is how many segments are fetched ahead by default.
const DefaultPrefetch = 8

// fetchFlagSet is a flag set with walfetch's own flags (for the config
// file's [walfetch] section, shared with walfetch restore).
func fetchFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("walfetch", pflag.ContinueOnError)
	(&cli.Common{}).Bind(fs)
	bindFetch(fs)
	return fs
}

func bindFetch(fs *pflag.FlagSet) *fetch.Config {
	cfg := &fetch.Config{}
	fs.DurationVar(&cfg.Timeout, "timeout", fetch.DefaultTimeout, "give up after this long, retries included")
	fs.IntVar(&cfg.Prefetch, "prefetch", DefaultPrefetch, "segments fetched ahead while PostgreSQL recovers, into a spool beside PGDATA (0 disables)")
	fs.DurationVar(&cfg.Wait, "wait", 0, "on a standby (standby.signal), wait this long for a segment not archived yet (walstored only)")
	fs.StringVar(&cfg.PGData, "pgdata", "", "data directory whose signal files decide how failures are reported (default: DEST's, else the working directory)")
	return cfg
}

// exitCode is walfetch's one exit-code decision. Only a definite "not
// found" is exit 1. In archive recovery every other failure is fatal for
// PostgreSQL (exit > 125), because any ordinary failure would end recovery
// early and silently drop the rest of the WAL; a standby just retries.
func exitCode(err error, mode fetch.Mode) int {
	switch {
	case err == nil:
		return cli.ExitOK
	case errors.Is(err, errkind.ErrNotFound):
		return cli.ExitFailure
	case mode == fetch.ArchiveRecovery:
		return cli.ExitFatalRecovery
	case errors.Is(err, cli.ErrUsage), errors.Is(err, errkind.ErrConfig), cli.Refused(err):
		return cli.ExitUsage
	}
	return cli.ExitUnavailable
}

func runPrefetcher(ctx context.Context, args []string, getenv func(string) string) int {
	fs := pflag.NewFlagSet("walfetch prefetch", pflag.ContinueOnError)
	// As walpush's pusher: a refused connection fails the item at once.
	c := cli.Common{Getenv: getenv, ReadOnly: true, FailFast: true}
	c.Bind(fs)
	cfg := bindFetch(fs)
	spool := fs.String("spool", "", "spool directory")
	if err := cli.Parse(fs, args, getenv, "walfetch"); err != nil || *spool == "" {
		return cli.ExitUsage
	}
	cfg.Open = c.Opener()
	if err := fetch.RunPrefetcher(ctx, *cfg, *spool, cfg.PGData); err != nil {
		return cli.ExitUnavailable
	}
	return cli.ExitOK
}
