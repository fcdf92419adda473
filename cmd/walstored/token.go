package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/internal/server/auth"
)

// runKey prints a new random archive encryption key.
func runKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored key", pflag.ContinueOnError)
	if err := parse(fs, args, getenv, stderr, "walstored key > /etc/walstore/ARCHIVE.key"); err != nil {
		return err
	}
	k, err := envelope.NewKeyText()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, k)
	return nil
}

// runToken mints a token and prints it with the line for the token file.
// Only the line (with the token's SHA-256) goes into the file walstored
// reads; the token itself goes to the client, in a file of its own.
func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored token", pflag.ContinueOnError)
	name := fs.String("name", "", "client name (e.g. the database host)")
	scope := fs.String("scope", "", "push (archive_command), fetch (standbys, restores) or admin (backup, retain, verify, delete)")
	archives := fs.String("archives", "", "comma-separated archives the client may touch, or * for all")
	if err := parse(fs, args, getenv, stderr, "walstored token --name NAME --scope push|fetch|admin --archives A[,B]|*"); err != nil {
		return err
	}
	sc, err := auth.ParseScope(*scope)
	if err != nil {
		return fmt.Errorf("%w: --scope: %v", cli.ErrUsage, err)
	}
	if *archives == "" {
		return fmt.Errorf("%w: --archives is required (a list, or * for all)", cli.ErrUsage)
	}
	var list []string
	if *archives != "*" {
		list = strings.Split(*archives, ",")
	}
	tok, err := auth.NewToken()
	if err != nil {
		return err
	}
	line, err := auth.Line(*name, sc, list, tok)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	fmt.Fprintf(stdout, "# token for %s; give it to the client in a file only it can read (--token-file), it is not stored anywhere:\n%s\n", *name, tok)
	fmt.Fprintf(stdout, "# line to add to walstored's token file (--tokens), then: systemctl reload walstored\n%s\n", line)
	return nil
}
