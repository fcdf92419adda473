package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/server/auth"
)

// bindKey prints a new random archive encryption key.
func bindKey(fs *pflag.FlagSet, e env) func(context.Context) error {
	return func(context.Context) error {
		k, err := envelope.NewKeyText()
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, k)
		return nil
	}
}

// bindToken mints a token and prints it with the line for the token file.
// Only the line (with the token's SHA-256) goes into the file walstored
// reads; the token itself goes to the client, in a file of its own.
func bindToken(fs *pflag.FlagSet, e env) func(context.Context) error {
	name := fs.String("name", "", "client name (e.g. the database host)")
	scope := fs.String("scope", "", "push (archive_command), fetch (standbys, restores), backup (walstored backup: adds packs and records, deletes nothing), metrics (Prometheus), peer (another walstored's notifications) or admin (retain, retire, quarantine, drill, recompress, delete)")
	archives := fs.String("archives", "", "comma-separated archives the client may touch, or * for all")
	asJSON := fs.Bool("json", false, "print JSON: {name, scope, archives, token, line}")
	return func(context.Context) error {
		sc, err := auth.ParseScope(*scope)
		if err != nil {
			return fmt.Errorf("%w: --scope: %v", cli.ErrUsage, err)
		}
		if *archives == "" {
			return fmt.Errorf("%w: --archives is required (a list, or * for all)", cli.ErrUsage)
		}
		list := []string{}
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
		if *asJSON {
			return admin.JSON(e.stdout, map[string]any{"name": *name, "scope": sc.String(), "archives": list, "token": tok, "line": line})
		}
		fmt.Fprintf(e.stdout, "# token for %s; give it to the client in a file only it can read (--token-file), it is not stored anywhere:\n%s\n", *name, tok)
		fmt.Fprintf(e.stdout, "# line to add to walstored's token file (--tokens), then: systemctl reload walstored\n%s\n", line)
		return nil
	}
}
