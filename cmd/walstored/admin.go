package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/retention"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/wal"
)

// openArchive validates the shared flags and opens the archive. Unless
// mayBeEmpty, an archive that holds nothing is an error naming the
// archives the repository does have: a typo in a cron job must not pass
// for ever.
func openArchive(ctx context.Context, c *cli.Common, mayBeEmpty bool) (*archive.Archive, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	a, err := c.OpenArchive(ctx)
	if err != nil || mayBeEmpty {
		return a, err
	}
	ok, err := a.Exists(ctx)
	if err != nil || ok {
		return a, err
	}
	names, _ := archive.Archives(ctx, a.Store)
	have := "none yet"
	if len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	return nil, fmt.Errorf("%w: archive %s does not exist in %s (its archives: %s); --allow-empty accepts an empty one", errkind.ErrNotFound, a.Name, store.Describe(a.Store), have)
}

func bindList(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, ReadOnly: true, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	allowEmpty := fs.Bool("allow-empty", false, "an archive that does not exist (yet) is an empty answer, not an error")
	return func(ctx context.Context) error {
		a, err := openArchive(ctx, &c, *allowEmpty)
		if err != nil {
			return err
		}
		inv, err := catalog.Load(ctx, a)
		if err != nil {
			return err
		}
		sysid, _ := a.SystemID(ctx)
		var stores []store.Health
		if hs, ok := store.As[*httpstore.Store](a.Store); ok {
			stores, _ = hs.Stores(ctx)
		}
		rep := admin.List(inv, sysid, stores)
		if *asJSON {
			return admin.JSON(e.stdout, rep)
		}
		admin.PrintList(e.stdout, rep)
		return nil
	}
}

func bindArchives(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, ReadOnly: true, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	late := fs.Duration("late", 10*time.Minute, "an archive without a new segment for this long is late")
	return func(ctx context.Context) error {
		if err := c.Check(); err != nil {
			return err
		}
		s, err := c.OpenStore(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		rep, err := admin.Archives(ctx, s, now, *late)
		if err != nil {
			return err
		}
		if hs, ok := store.As[*httpstore.Store](s); ok {
			if h, err := hs.Stores(ctx); err == nil {
				rep.Stores = h
			}
		}
		if *asJSON {
			err = admin.JSON(e.stdout, rep)
		} else {
			admin.PrintArchives(e.stdout, rep, now)
		}
		if err != nil {
			return err
		}
		// An archive recovery cannot trust fails the command, as verify does.
		var bad []string
		for _, a := range rep.Archives {
			if a.State == "broken" || a.State == "dead_branch" {
				bad = append(bad, a.Archive+" ("+a.State+")")
			}
		}
		if len(bad) > 0 {
			return &failedError{code: cli.ExitFailure, err: fmt.Errorf("%s: walstored verify --archive A says what and how to fix it", strings.Join(bad, ", "))}
		}
		return nil
	}
}

func bindRetain(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	keepLast := fs.Int("keep-last", 0, "keep the newest N completed backups (required, at least 1)")
	keepWithin := fs.String("keep-within", "", "also keep what recovery to any point of this long ago needs (e.g. 14d, 36h)")
	keepIncomplete := fs.String("keep-incomplete", "24h", "delete incomplete backups untouched for longer than this")
	dryRun := fs.Bool("dry-run", false, "say what would be deleted, delete nothing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	allowEmpty := fs.Bool("allow-empty", false, "an archive that does not exist (yet) is nothing to do, not an error")
	return func(ctx context.Context) error {
		p := retention.Policy{KeepLast: *keepLast}
		var err error
		if *keepWithin != "" {
			if p.KeepWithin, err = units.ParseDuration(*keepWithin); err != nil {
				return fmt.Errorf("%w: --keep-within: %v", cli.ErrUsage, err)
			}
		}
		if p.KeepIncomplete, err = units.ParseDuration(*keepIncomplete); err != nil {
			return fmt.Errorf("%w: --keep-incomplete: %v", cli.ErrUsage, err)
		}
		if p.KeepLast < 1 {
			return fmt.Errorf("%w: --keep-last N is required and at least 1 (the newest backup is never deleted)", cli.ErrUsage)
		}
		a, err := openArchive(ctx, &c, *allowEmpty)
		if err != nil {
			return err
		}
		res, err := retention.Run(ctx, a, p, time.Now(), *dryRun)
		if err != nil {
			return err
		}
		if *asJSON {
			return admin.JSON(e.stdout, res)
		}
		admin.PrintRetain(e.stdout, res)
		return nil
	}
}

func bindVerify(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	jobs := fs.Int("jobs", 4, "objects read at once")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	allowEmpty := fs.Bool("allow-empty", false, "an archive that does not exist (yet) passes, instead of failing")
	full := fs.Bool("full", false, "read every object again, not only those new or changed since the last verify")
	deep := fs.Bool("deep", false, "also check that every block every backup lists is in its pack and hashes to its address")
	noRecord := fs.Bool("no-record", false, "record nothing (read-only access): every object is read, and archives and the status page do not learn of the result")
	return func(ctx context.Context) error {
		c.ReadOnly = *noRecord
		a, err := openArchive(ctx, &c, *allowEmpty)
		if err != nil {
			return err
		}
		rep, err := catalog.Verify(ctx, a, catalog.VerifyOptions{Jobs: *jobs, Full: *full || *noRecord, Deep: *deep, Record: !*noRecord})
		if err != nil {
			return err
		}
		if err := printReport(e, *asJSON, rep, func() { admin.PrintVerify(e.stdout, rep) }); err != nil {
			return err
		}
		if !rep.OK {
			return &failedError{code: cli.ExitFailure, err: fmt.Errorf("archive %s: %s, first: %s", a.Name, admin.Count(len(rep.Problems), "problem", "problems"), rep.Problems[0])}
		}
		return nil
	}
}

// bindTimeline is "walstored timeline retire|restore": a dead branch out
// of recovery's view, recorded, deleting nothing; or back again.
func bindTimeline(fs *pflag.FlagSet, e env) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	tli := fs.String("timeline", "", "the timeline (a number, as in its history file's name: 3, or 0000000A)")
	reason := fs.String("reason", "", "why, for the record")
	asJSON := fs.Bool("json", false, "print the record as JSON")
	return func(ctx context.Context) error {
		args := fs.Args()
		if len(args) != 1 || args[0] != "retire" && args[0] != "restore" {
			return fmt.Errorf("%w: want walstored timeline retire|restore --timeline N", cli.ErrUsage)
		}
		n, err := parseTimeline(*tli)
		if err != nil {
			return err
		}
		a, err := openArchive(ctx, &c, false)
		if err != nil {
			return err
		}
		var rec archive.RetiredTimeline
		if args[0] == "retire" {
			rec, err = a.RetireTimeline(ctx, n, by(e), *reason)
		} else {
			rec, err = a.RestoreTimeline(ctx, n)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return admin.JSON(e.stdout, rec)
		}
		verb := "retired"
		if args[0] == "restore" {
			verb = "brought back"
		}
		fmt.Fprintf(e.stdout, "timeline %d of archive %s %s: %s (%s)\n", n, a.Name, verb, admin.Count(len(rec.Files), "file", "files"), admin.Size(rec.Bytes))
		return nil
	}
}

// bindQuarantine is "walstored quarantine": a stored WAL object set
// aside, recorded, deleting nothing.
func bindQuarantine(fs *pflag.FlagSet, e env) func(context.Context) error {
	reason := fs.String("reason", "", "why, for the record")
	return bindOnWALFile(fs, e, func(ctx context.Context, a *archive.Archive, n wal.Name) (archive.Quarantined, string, error) {
		q, err := a.Quarantine(ctx, n, by(e), *reason)
		return q, fmt.Sprintf("%s of archive %s (sha256 %s, %s) set aside as %s; the name is free for the good copy (walstored unquarantine puts it back)", n, a.Name, q.SHA256[:min(12, len(q.SHA256))], admin.Size(q.Bytes), q.Key), err
	})
}

// bindUnquarantine is "walstored unquarantine": a quarantined object back
// under its name.
func bindUnquarantine(fs *pflag.FlagSet, e env) func(context.Context) error {
	sum := fs.String("sha256", "", "which quarantined copy, when there are several of that name")
	return bindOnWALFile(fs, e, func(ctx context.Context, a *archive.Archive, n wal.Name) (archive.Quarantined, string, error) {
		q, err := a.Unquarantine(ctx, n, *sum)
		return q, fmt.Sprintf("%s of archive %s (sha256 %s) is back under its name", n, a.Name, q.SHA256[:min(12, len(q.SHA256))]), err
	})
}

// bindOnWALFile binds an admin command on one WAL file of an archive,
// whose record it prints (as JSON with --json).
func bindOnWALFile(fs *pflag.FlagSet, e env, do func(context.Context, *archive.Archive, wal.Name) (archive.Quarantined, string, error)) func(context.Context) error {
	c := cli.Common{Getenv: e.getenv, NoCache: true, FailFastFirst: true}
	c.Bind(fs)
	asJSON := fs.Bool("json", false, "print the record as JSON")
	return func(ctx context.Context) error {
		n, err := oneWALName(fs)
		if err != nil {
			return err
		}
		a, err := openArchive(ctx, &c, false)
		if err != nil {
			return err
		}
		q, text, err := do(ctx, a, n)
		if err != nil {
			return err
		}
		return printReport(e, *asJSON, q, func() { fmt.Fprintln(e.stdout, text) })
	}
}

func oneWALName(fs *pflag.FlagSet) (wal.Name, error) {
	if fs.NArg() != 1 {
		return wal.Name{}, fmt.Errorf("%w: want one WAL file name, got %d arguments", cli.ErrUsage, fs.NArg())
	}
	n, err := wal.ParseName(fs.Arg(0))
	if err != nil {
		return wal.Name{}, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	return n, nil
}

// parseTimeline reads "3" or "00000003" (hex, as in file names).
func parseTimeline(s string) (uint32, error) {
	var v uint64
	var err error
	if len(s) == 8 {
		v, err = strconv.ParseUint(s, 16, 32)
	} else {
		v, err = strconv.ParseUint(s, 10, 32)
	}
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: --timeline %q: want a timeline number", cli.ErrUsage, s)
	}
	return uint32(v), nil
}

// by names who ran an admin command, for records.
func by(e env) string {
	u := e.getenv("USER")
	if u == "" {
		u = "unknown user"
	}
	return u
}

// printReport prints a command's report: as JSON with --json, else with
// text, for people.
func printReport(e env, asJSON bool, v any, text func()) error {
	if asJSON {
		return admin.JSON(e.stdout, v)
	}
	text()
	return nil
}
