package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/backupset/drill"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/store/httpstore"
)

// bindDrill is "walstored drill": restore a backup into a scratch
// directory and let PostgreSQL recover it, to prove the archive restores.
func bindDrill(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	opt := drill.Options{}
	fs.StringVar(&opt.Backup, "backup", "latest", "backup id, or latest")
	fs.StringVar(&opt.Scratch, "scratch", "", "directory for the scratch copy (default the system's temporary directory); needs room for the backup")
	fs.StringVar(&opt.OSUser, "run-as", "", "when run as root: the OS user the drill's PostgreSQL runs as (default postgres; better a dedicated unprivileged user, see the README)")
	fs.StringVar(&opt.OSUser, "os-user", "", "the same as --run-as")
	fs.MarkHidden("os-user")
	fs.StringVar(&opt.DBUser, "db-user", "postgres", "a superuser role of the cluster, to ask how far recovery got")
	fs.StringVar(&opt.PGBin, "pg-bin", "", "PostgreSQL server binaries (default /usr/lib/postgresql/MAJOR/bin)")
	fs.StringVar(&opt.Target.Time, "target-time", "", "recover up to this time instead of the end of the archive")
	fs.StringVar(&opt.Target.LSN, "target-lsn", "", "recover up to this WAL position instead")
	walfetch := fs.String("walfetch", "", "the walfetch binary the drill's restore_command runs (default: next to walstored, else in PATH)")
	asJSON := fs.Bool("json", false, "print the drill's record as JSON")
	return func(ctx context.Context) error {
		a, err := openArchive(ctx, &c, false)
		if err != nil {
			return err
		}
		wf, err := findWalfetch(*walfetch)
		if err != nil {
			return err
		}
		opt.Archive = a
		// The drill's restore_command reads through the drill (no token,
		// key or certificate of ours reaches its server).
		opt.WalFetch = wf
		if opt.Target.Set() {
			opt.Target.Action = "pause"
		}
		if !*asJSON {
			opt.Out = e.stdout
		}
		d, err := drill.Run(ctx, opt)
		if rerr := a.PutDrill(context.WithoutCancel(ctx), d); rerr != nil {
			fmt.Fprintf(e.stderr, "walstored drill: the drill's record could not be stored: %s\n", cli.OneLine(rerr))
		}
		if *asJSON {
			if jerr := admin.JSON(e.stdout, d); jerr != nil {
				return jerr
			}
		} else if err == nil {
			fmt.Fprintf(e.stdout, "drill of archive %s passed: backup %s restored in %.1fs, recovered to %s on timeline %d (%s of WAL) in %.1fs; %.1fs in all\n",
				a.Name, d.Backup, d.RestoreSeconds, d.ReplayedTo, d.Timeline, admin.Size(d.WALBytes), d.RecoverySeconds, d.Seconds)
		}
		if err != nil {
			// A drill that ran and failed (a gap, a corrupt part, a server
			// that stopped) is a definite no: exit 1. Only a repository
			// that could not be reached is "no answer" (3).
			code := cli.ExitCode(err)
			if code == cli.ExitUnavailable && !errors.Is(err, httpstore.ErrUnreachable) && !errors.Is(err, context.DeadlineExceeded) {
				code = cli.ExitFailure
			}
			return &failedError{code: code, err: fmt.Errorf("drill of backup %s failed: %w", d.Backup, err)}
		}
		return nil
	}
}

// findWalfetch is the walfetch next to this binary, else the one in PATH.
func findWalfetch(given string) (string, error) {
	if given != "" {
		return filepath.Abs(given)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "walfetch")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("walfetch")
	if err != nil {
		return "", fmt.Errorf("%w: no walfetch next to walstored or in PATH (give --walfetch)", cli.ErrUsage)
	}
	return filepath.Abs(p)
}
