// Command walstored is walstore's storage daemon and admin tool:
//
//	walstored serve   front a store (directory, S3/MinIO) over HTTP(S)
//
// See the README for every subcommand, flag and exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/walstore/walstore/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: walstored COMMAND [flags]

commands:
  init      make a new repository in a file:// or s3:// store
  serve     serve a store over HTTP(S)
  backup    take a base backup of a cluster into an archive
  list      list an archive's backups and WAL ranges (with gaps)
  retain    delete expired backups and the WAL no kept backup needs
  verify    check every object's checksum and WAL continuity
  token     mint a client token and print its token-file line
  key       print a new archive encryption key (for --encryption-key-file)
  sync      copy what one store is missing from another (several --store)

"walstored COMMAND --help" lists a command's flags.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	cmds := map[string]func(context.Context, []string, func(string) string, io.Writer, io.Writer) error{
		"serve":  runServe,
		"init":   runInit,
		"backup": runBackup,
		"list":   runList,
		"retain": runRetain,
		"verify": runVerify,
		"token":  runToken,
		"key":    runKey,
		"sync":   runSync,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		if args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
			fmt.Fprint(stdout, usage)
			return cli.ExitOK
		}
		fmt.Fprintf(stderr, "walstored: unknown command %q\n%s", args[0], usage)
		return cli.ExitUsage
	}
	err := cmd(ctx, args[1:], getenv, stdout, stderr)
	if errors.Is(err, errHelp) {
		return cli.ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "walstored %s: %s\n", args[0], cli.OneLine(err))
		return exitCode(err)
	}
	return cli.ExitOK
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

var errHelp = errors.New("help shown")
