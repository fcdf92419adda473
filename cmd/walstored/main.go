// Command walstored is walstore's storage daemon and admin tool:
//
//	walstored serve   front a store (directory, S3/MinIO) over HTTP(S)
//	walstored backup, list, archives, retain, verify, drill, check, ...
//
// See the README for every subcommand, flag and exit code. Each
// subcommand here only binds its flags and calls a package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// env is what a subcommand runs with.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// command is one subcommand: bind adds its flags to fs and returns what
// runs once they are parsed.
type command struct {
	name, synopsis, summary string
	// timeout is the default of its --timeout (0: no --timeout flag).
	timeout time.Duration
	bind    func(fs *pflag.FlagSet, e env) func(ctx context.Context) error
}

var commands = []command{
	{"init", "walstored init --store URL [--store URL]", "make a new repository in a file:// or s3:// store", time.Minute, bindInit},
	{"serve", "walstored serve [--listen ADDR] [--store URL ...] [flags]", "serve a repository over HTTP(S)", 0, bindServe},
	{"backup", "walstored backup --repo URL --archive A --pg CONNINFO [flags]", "take a base backup of a cluster into an archive", 24 * time.Hour, bindBackup},
	{"list", "walstored list --repo URL --archive A [--json]", "list an archive's backups and WAL ranges (with gaps)", 10 * time.Minute, bindList},
	{"archives", "walstored archives --repo URL [--json]", "every archive of a repository at a glance", 10 * time.Minute, bindArchives},
	{"retain", "walstored retain --repo URL --archive A --keep-last N [--keep-within DUR] [--dry-run] [--json]", "delete expired backups and the WAL no kept backup needs", time.Hour, bindRetain},
	{"verify", "walstored verify --repo URL --archive A [--full] [--jobs N] [--json]", "check every object's checksum, WAL continuity and timelines", 6 * time.Hour, bindVerify},
	{"drill", "walstored drill --repo URL --archive A [--backup latest|ID] [--json]", "restore a backup into a scratch directory and recover it with PostgreSQL", 24 * time.Hour, bindDrill},
	{"check", "walstored check --repo URL --archive A --pg CONNINFO [--json]", "check that a cluster's archiving reaches the archive, end to end", 5 * time.Minute, bindCheck},
	{"timeline", "walstored timeline retire|restore --repo URL --archive A --timeline N [--reason TEXT]", "take a dead branch out of recovery's view, or bring it back", time.Hour, bindTimeline},
	{"quarantine", "walstored quarantine --repo URL --archive A NAME [--reason TEXT] [--json]", "set a stored WAL object aside (deletes nothing): the name is free for the good copy", 10 * time.Minute, bindQuarantine},
	{"unquarantine", "walstored unquarantine --repo URL --archive A NAME [--sha256 S] [--json]", "put a quarantined WAL object back under its name", 10 * time.Minute, bindUnquarantine},
	{"token", "walstored token --name NAME --scope push|fetch|backup|metrics|peer|admin --archives A[,B]|* [--json]", "mint a client token and print its token-file line", 0, bindToken},
	{"tls", "walstored tls [--dir /etc/walstore/tls] --host NAME [--host IP] [--client NAME]", "make a CA (once), walstored's TLS certificate and client certificates", 0, bindTLS},
	{"key", "walstored key > /etc/walstore/ARCHIVE.key", "print a new archive encryption key (for --encryption-key-file)", 0, bindKey},
	{"sync", "walstored sync --store URL --store URL [--prefix P] [--json]", "copy what one store is missing from another", 24 * time.Hour, bindSync},
	{"recompress", "walstored recompress --store URL [--archive A] [--min-age 1h] [--rate 50MiB] [--dry-run] [--json]", "store old WAL and backups in a smaller encoding (idle-time pass)", 24 * time.Hour, bindRecompress},
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: walstored COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\n\"walstored COMMAND --help\" lists a command's flags; \"walstored --version\" says which walstore this is.\n")
	return b.String()
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return cli.ExitUsage
	}
	if args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stdout, usage())
		return cli.ExitOK
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(stdout, version.String("walstored"))
		return cli.ExitOK
	}
	var cmd *command
	for k := range commands {
		if commands[k].name == args[0] {
			cmd = &commands[k]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "walstored: unknown command %q\n%s", args[0], usage())
		return cli.ExitUsage
	}
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	fs := pflag.NewFlagSet("walstored "+cmd.name, pflag.ContinueOnError)
	var timeout *time.Duration
	if cmd.timeout > 0 {
		timeout = fs.Duration("timeout", cmd.timeout, "give up after this long")
	}
	runner := cmd.bind(fs, e)
	err := cli.Parse(fs, args[1:], getenv, "walstored", otherFlagSets(cmd.name)...)
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stdout, cmd.synopsis, fs)
		return cli.ExitOK
	}
	if err == nil && fs.NArg() != 0 && cmd.name != "timeline" && cmd.name != "quarantine" && cmd.name != "unquarantine" {
		err = fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	if err == nil && timeout != nil {
		if *timeout <= 0 {
			err = fmt.Errorf("%w: --timeout must be positive", cli.ErrUsage)
		} else {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
	}
	if err == nil {
		err = runner(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "walstored %s: %s\n", cmd.name, cli.OneLine(err))
		return exitCode(err)
	}
	return cli.ExitOK
}

// otherFlagSets are the flags of every other subcommand: a [walstored]
// section of a config file may hold any of them.
func otherFlagSets(except string) []*pflag.FlagSet {
	var out []*pflag.FlagSet
	for _, c := range commands {
		if c.name == except {
			continue
		}
		fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
		if c.timeout > 0 {
			fs.Duration("timeout", c.timeout, "")
		}
		c.bind(fs, env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard})
		out = append(out, fs)
	}
	return out
}

// exitCode is walstored's one exit-code decision.
func exitCode(err error) int {
	var fe *failedError
	if errors.As(err, &fe) {
		return fe.code
	}
	return cli.ExitCode(err)
}

// failedError carries an explicit exit code (verify's "found problems").
type failedError struct {
	code int
	err  error
}

func (e *failedError) Error() string { return e.err.Error() }
func (e *failedError) Unwrap() error { return e.err }
