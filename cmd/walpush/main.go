// Command walpush is PostgreSQL's archive_command:
//
//	archive_command = 'walpush --repo http://storage:7480 --archive main %p'
//
// It stores the file at PATH in the archive, write-once and checksummed,
// and exits 0 only once the repository has it durably. See the README for
// flags and exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/client/push"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const synopsis = "walpush [flags] PATH\n       walpush agent --pgdata DIR [flags]   (for archive_library = 'walstore')"

func bind(fs *pflag.FlagSet, c *cli.Common, cfg *push.Config) {
	c.Bind(fs)
	fs.DurationVar(&cfg.Timeout, "timeout", push.DefaultTimeout, "give up after this long, retries included (env WALSTORE_TIMEOUT)")
	fs.IntVar(&cfg.Jobs, "jobs", DefaultJobs(), "files uploaded at once: this one plus other .ready files pushed ahead by a background pusher (1 disables push-ahead)")
	fs.BoolVar(&cfg.Force, "force", false, "push a file of a live pg_wal that PostgreSQL has not marked .ready (by hand only: walstored still refuses a segment whose WAL stops before its end)")
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintln(stdout, version.String("walpush"))
		return cli.ExitOK
	}
	if len(args) > 0 && args[0] == "push-ahead" {
		return runPusher(ctx, args[1:], getenv)
	}
	if len(args) > 0 && args[0] == "agent" {
		return runAgent(ctx, args[1:], getenv, stdout, stderr)
	}
	fs := pflag.NewFlagSet("walpush", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv}
	var cfg push.Config
	bind(fs, &c, &cfg)
	err := cli.Parse(fs, args, getenv, "walpush", agentFlags())
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stdout, synopsis, fs)
		return cli.ExitOK
	}
	if err == nil && fs.NArg() != 1 {
		err = fmt.Errorf("%w: want exactly one PATH (use %%p in archive_command), got %d arguments", cli.ErrUsage, fs.NArg())
	}
	if err == nil {
		err = c.Check()
	}
	if err == nil && cfg.Timeout <= 0 {
		err = fmt.Errorf("%w: --timeout must be positive", cli.ErrUsage)
	}
	if err == nil && (cfg.Jobs < 1 || cfg.Jobs > 64) {
		err = fmt.Errorf("%w: --jobs %d: want 1 to 64", cli.ErrUsage, cfg.Jobs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "walpush: %s\n", cli.OneLine(err))
		return cli.ExitUsage
	}
	path := fs.Arg(0)
	// The deadline covers opening the repository too: nothing may hang.
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "walpush: %s: archive %s: %s\n", filepath.Base(path), c.Archive, cli.OneLine(err))
		return cli.ExitCode(err)
	}
	// PostgreSQL calls archive_command again after a failure: a walstored
	// that refuses connections fails the call at once.
	c.FailFast = true
	if filepath.Base(filepath.Dir(cli.AbsPath(path))) == "pg_wal" {
		c.Cache = cli.OpenCache(worker.StateDir(filepath.Dir(filepath.Dir(cli.AbsPath(path)))))
	}
	cfg.Open = c.Opener()
	cfg.Repo, _ = c.RepoURL()
	cfg.ArchiveName = c.Archive
	cfg.Log = cli.Logger(stderr, c.Verbose)
	keys, err := c.Keyring()
	if err != nil {
		return fail(err)
	}
	if keys != nil {
		cfg.Key = keys.Encrypt
	}
	cfg.Spawn = func(walDir string) error { return cli.SpawnDetached(fs, "push-ahead", "--wal-dir", walDir) }
	res, err := push.Push(ctx, cfg, path)
	if err != nil {
		return fail(err)
	}
	if w := res.Warning(c.Archive); w != "" {
		fmt.Fprintf(stderr, "walpush: %s\n", w)
		return cli.ExitOK
	}
	if c.Verbose {
		fmt.Fprintf(stderr, "walpush: %s: archive %s: %s\n", res.Name, c.Archive, res.Describe())
	}
	return cli.ExitOK
}

// DefaultJobs is two uploads per core, at most 8: compression and hashing
// keep a core busy, and the network wait of the other overlaps with it.
func DefaultJobs() int { return min(8, 2*runtime.NumCPU()) }

// runPusher is the detached "walpush push-ahead": it uploads the .ready
// backlog of one pg_wal ahead of PostgreSQL's calls, then exits when idle.
func runPusher(ctx context.Context, args []string, getenv func(string) string) int {
	fs := pflag.NewFlagSet("walpush push-ahead", pflag.ContinueOnError)
	// A walstored that refuses connections fails the item at once: the
	// loop tries it again later and exits when every attempt fails, and
	// PostgreSQL's own call may be waiting on the item's claim.
	c := cli.Common{Getenv: getenv, FailFast: true}
	var cfg push.Config
	bind(fs, &c, &cfg)
	walDir := fs.String("wal-dir", "", "pg_wal directory")
	if err := cli.Parse(fs, args, getenv, "walpush"); err != nil || *walDir == "" || c.Check() != nil {
		return cli.ExitUsage
	}
	cfg.Open = c.Opener()
	cfg.Repo, _ = c.RepoURL()
	cfg.ArchiveName = c.Archive
	if keys, err := c.Keyring(); err != nil {
		return cli.ExitUsage
	} else if keys != nil {
		cfg.Key = keys.Encrypt
	}
	if err := push.RunPusher(ctx, cfg, *walDir); err != nil {
		return cli.ExitUnavailable
	}
	return cli.ExitOK
}
