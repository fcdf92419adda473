package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/internal/admin"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/recompress"
)

// bindRecompress is "walstored recompress": one pass that stores old
// objects in a smaller encoding (see package recompress).
func bindRecompress(fs *pflag.FlagSet, e env) func(context.Context) error {
	var stores, archives []string
	fs.StringArrayVar(&stores, "store", nil, "the store(s) walstored serves (as for serve: give --store again for several)")
	fs.String("config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	fs.StringArrayVar(&archives, "archive", nil, "only this archive (give it again for several; default: every archive)")
	minAge := fs.Duration("min-age", time.Hour, "leave objects younger than this for a later pass (the ones standbys read now)")
	maxAge := fs.Duration("max-age", 0, "leave objects older than this alone (a daily timer: 72h; 0: look at every object)")
	rate := fs.String("rate", "0", "read at most this much per second, e.g. 50MiB (0: no bound)")
	dryRun := fs.Bool("dry-run", false, "measure what a pass would save, replace nothing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context) error {
		if len(stores) == 0 {
			return fmt.Errorf("%w: give --store (the store walstored serves)", cli.ErrUsage)
		}
		bytesPerSec, err := units.ParseSize(*rate)
		if err != nil || bytesPerSec < 0 {
			return fmt.Errorf("%w: --rate %q: want a size per second like 50MiB, or 0", cli.ErrUsage, *rate)
		}
		if *minAge < 0 || *maxAge < 0 || *maxAge > 0 && *maxAge <= *minAge {
			return fmt.Errorf("%w: --min-age and --max-age must not be negative, and --max-age (when given) must be above --min-age", cli.ErrUsage)
		}
		st, _, err := openStores(ctx, e.getenv, stores, 0, 0, nil, nil)
		if err != nil {
			return err
		}
		age := *minAge
		if age == 0 {
			age = time.Nanosecond // everything, however young
		}
		rep, err := recompress.Run(ctx, st, recompress.Options{Archives: archives, MinAge: age, MaxAge: *maxAge, Rate: bytesPerSec, DryRun: *dryRun})
		if err != nil {
			return err
		}
		if err := printReport(e, *asJSON, rep, func() { printRecompress(e, rep) }); err != nil {
			return err
		}
		if len(rep.Corrupt) > 0 {
			return &failedError{code: cli.ExitFailure, err: fmt.Errorf("%s do not verify (see above)", admin.Count(len(rep.Corrupt), "stored copy", "stored copies"))}
		}
		return nil
	}
}

// printRecompress prints a pass for people.
func printRecompress(e env, rep recompress.Report) {
	verb := "recompressed"
	if rep.DryRun {
		verb = "would recompress"
	}
	pct := 0.0
	if rep.BytesBefore > 0 {
		pct = 100 * float64(rep.Saved()) / float64(rep.BytesBefore)
	}
	perGiB := ""
	if rep.RawBytes > 0 {
		perGiB = fmt.Sprintf(", %.1f s per GiB of raw data", rep.Seconds/(float64(rep.RawBytes)/(1<<30)))
	}
	fmt.Fprintf(e.stdout, "recompress: %s %s: %s -> %s (%.0f%% smaller); %d already small, %d encrypted (left as is), %d too young, %d older than --max-age; %.1f s%s\n",
		verb, admin.Count(rep.Recompressed, "object", "objects"), admin.Size(rep.BytesBefore), admin.Size(rep.BytesAfter), pct,
		rep.AlreadySmall, rep.Encrypted, rep.TooYoung, rep.TooOld, rep.Seconds, perGiB)
	if rep.Changed > 0 {
		fmt.Fprintf(e.stdout, "  %s changed or deleted while being recompressed: left for the next pass\n", admin.Count(rep.Changed, "object", "objects"))
	}
	for _, name := range rep.Busy {
		fmt.Fprintf(e.stdout, "  archive %s skipped: retention (or another pass) holds its lease; next pass\n", name)
	}
	for _, k := range rep.Corrupt {
		fmt.Fprintf(e.stdout, "  CORRUPT %s: does not verify, left as is (walstored verify reports it; a push of the same content repairs it)\n", k)
	}
	if rep.Stopped {
		fmt.Fprintln(e.stdout, "  stopped before the end (--timeout or a signal): every object is whole in its old or new encoding; run again to go on")
	}
}
