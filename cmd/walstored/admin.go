package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/retention"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
)

func runList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored list", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, ReadOnly: true, NoCache: true}
	c.Bind(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, getenv, stderr, "walstored list --repo URL --archive A [--json]"); err != nil {
		return err
	}
	a, err := openChecked(ctx, &c)
	if err != nil {
		return err
	}
	inv, err := catalog.Load(ctx, a)
	if err != nil {
		return err
	}
	sysid, _ := a.SystemID(ctx)
	var stores []store.Health
	if hs, ok := a.Store.(*httpstore.Store); ok {
		stores, _ = hs.Stores(ctx)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(listJSON(inv, sysid, stores))
	}
	printList(stdout, inv, sysid)
	if len(stores) > 1 {
		fmt.Fprintln(stdout, "\nstores behind walstored:")
		for _, st := range stores {
			state := "up"
			if !st.Up {
				state = "DOWN (" + st.LastError + ")"
			}
			fmt.Fprintf(stdout, "  %s: %s, %d objects owed (copied at the next sync)\n", st.Name, state, st.Owed)
		}
	}
	return nil
}

type rangeJSON struct {
	First string `json:"first"`
	Last  string `json:"last"`
	Count int    `json:"count"`
}

type timelineJSON struct {
	Timeline    uint32      `json:"timeline"`
	Parent      uint32      `json:"parent,omitempty"`
	SwitchPoint string      `json:"switch_point,omitempty"`
	Ranges      []rangeJSON `json:"ranges"`
	Gaps        []rangeJSON `json:"gaps"`
}

func listJSON(inv *catalog.Inventory, sysid uint64, stores []store.Health) any {
	type incomplete struct {
		ID        string    `json:"id"`
		Objects   int       `json:"objects"`
		Bytes     int64     `json:"bytes"`
		LastWrite time.Time `json:"last_write"`
	}
	out := struct {
		Archive     string         `json:"archive"`
		SystemID    string         `json:"system_identifier,omitempty"`
		SegmentSize int64          `json:"wal_segment_size"`
		Backups     any            `json:"backups"`
		Incomplete  []incomplete   `json:"incomplete_backups"`
		Timelines   []timelineJSON `json:"timelines"`
		Stores      any            `json:"stores,omitempty"`
	}{Archive: inv.Archive, SegmentSize: inv.SegSize, Backups: inv.Backups.Complete, Incomplete: []incomplete{}, Timelines: []timelineJSON{}, Stores: stores}
	if sysid != 0 {
		out.SystemID = fmt.Sprint(sysid)
	}
	for id, p := range inv.Backups.Incomplete {
		out.Incomplete = append(out.Incomplete, incomplete{id, p.Objects, p.Bytes, p.Newest})
	}
	for _, tli := range inv.Timelines() {
		tj := timelineJSON{Timeline: tli, Ranges: []rangeJSON{}, Gaps: []rangeJSON{}}
		if h := inv.Histories[tli]; len(h) > 0 {
			tj.Parent, tj.SwitchPoint = h[len(h)-1].TLI, h[len(h)-1].SwitchPoint.String()
		}
		rs := inv.Ranges(tli)
		for i, r := range rs {
			tj.Ranges = append(tj.Ranges, rangeJSON{r.First.String(), r.Last.String(), r.Count})
			if i > 0 {
				g := gapBetween(rs[i-1], r, inv.SegSize)
				tj.Gaps = append(tj.Gaps, rangeJSON{g.First.String(), g.Last.String(), g.Count})
			}
		}
		out.Timelines = append(out.Timelines, tj)
	}
	return out
}

func gapBetween(a, b catalog.Range, segSize int64) catalog.Range {
	first, last := a.Last.Next(segSize), b.First
	last, _ = last.Prev(segSize)
	return catalog.Range{TLI: a.TLI, First: first, Last: last, Count: int(b.First.SegNo(segSize) - a.Last.SegNo(segSize) - 1)}
}

func printList(w io.Writer, inv *catalog.Inventory, sysid uint64) {
	fmt.Fprintf(w, "archive %s", inv.Archive)
	if sysid != 0 {
		fmt.Fprintf(w, " (PostgreSQL system %d", sysid)
		if inv.SegSize > 0 {
			fmt.Fprintf(w, ", %d MiB segments", inv.SegSize>>20)
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\nbackups:")
	if len(inv.Backups.Complete) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tSTART LSN\tSTOP LSN\tTL\tSTARTED (UTC)\tENDED (UTC)\tSIZE\tSTORED")
		for _, r := range inv.Backups.Complete {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.StartLSN, r.StopLSN, r.StartTLI,
				r.StartTime.UTC().Format("2006-01-02 15:04:05"), r.StopTime.UTC().Format("2006-01-02 15:04:05"), size(r.RawSize), size(r.StoredSize))
		}
		tw.Flush()
	}
	for id, p := range inv.Backups.Incomplete {
		fmt.Fprintf(w, "  incomplete: %s (%d objects, %s, last write %s) — in progress or failed; retain removes it after a day\n",
			id, p.Objects, size(p.Bytes), p.Newest.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w, "\nWAL by timeline:")
	tls := inv.Timelines()
	if len(tls) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, tli := range tls {
		head := fmt.Sprintf("  timeline %d", tli)
		if h := inv.Histories[tli]; len(h) > 0 {
			head += fmt.Sprintf(" (from timeline %d at %s)", h[len(h)-1].TLI, h[len(h)-1].SwitchPoint)
		}
		fmt.Fprintln(w, head+":")
		rs := inv.Ranges(tli)
		if len(rs) == 0 {
			fmt.Fprintln(w, "    no segments yet")
		}
		for i, r := range rs {
			if i > 0 {
				g := gapBetween(rs[i-1], r, inv.SegSize)
				fmt.Fprintf(w, "    GAP %s .. %s (%d missing)\n", g.First, g.Last, g.Count)
			}
			fmt.Fprintf(w, "    %s .. %s (%d segments)\n", r.First, r.Last, r.Count)
		}
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

func runRetain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored retain", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, NoCache: true}
	c.Bind(fs)
	keepLast := fs.Int("keep-last", 0, "keep the newest N completed backups (required, at least 1)")
	keepWithin := fs.String("keep-within", "", "also keep backups that ended within this long (e.g. 14d, 36h)")
	keepIncomplete := fs.String("keep-incomplete", "24h", "delete incomplete backups untouched for longer than this")
	dryRun := fs.Bool("dry-run", false, "say what would be deleted, delete nothing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, getenv, stderr, "walstored retain --repo URL --archive A --keep-last N [--keep-within DUR] [--dry-run] [--json]"); err != nil {
		return err
	}
	p := retention.Policy{KeepLast: *keepLast}
	var err error
	if *keepWithin != "" {
		if p.KeepWithin, err = cli.ParseDuration(*keepWithin); err != nil {
			return fmt.Errorf("%w: --keep-within: %v", cli.ErrUsage, err)
		}
	}
	if p.KeepIncomplete, err = cli.ParseDuration(*keepIncomplete); err != nil {
		return fmt.Errorf("%w: --keep-incomplete: %v", cli.ErrUsage, err)
	}
	if p.KeepLast < 1 {
		return fmt.Errorf("%w: --keep-last N is required and at least 1 (the newest backup is never deleted)", cli.ErrUsage)
	}
	a, err := openChecked(ctx, &c)
	if err != nil {
		return err
	}
	res, err := retention.Run(ctx, a, p, time.Now(), *dryRun)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(stdout, "retain archive %s: kept %d backups [%s]; %s %d backups [%s] and %d incomplete (%d objects, %s); %s %d WAL files (%s)",
		res.Archive, len(res.Kept), strings.Join(res.Kept, " "), verb, len(res.DeletedBackups), strings.Join(res.DeletedBackups, " "),
		len(res.DeletedIncomplete), res.BackupObjects, size(res.BackupBytes), verb, res.WALFiles, size(res.WALBytes))
	if res.WALFiles > 0 {
		fmt.Fprintf(stdout, " %s .. %s", res.WALFirst, res.WALLast)
	}
	if res.KeepFrom != "" {
		fmt.Fprintf(stdout, "; WAL kept from %s", res.KeepFrom)
	}
	fmt.Fprintln(stdout)
	return nil
}

func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("walstored verify", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, ReadOnly: true, NoCache: true}
	c.Bind(fs)
	jobs := fs.Int("jobs", 4, "objects read at once")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args, getenv, stderr, "walstored verify --repo URL --archive A [--jobs N] [--json]"); err != nil {
		return err
	}
	a, err := openChecked(ctx, &c)
	if err != nil {
		return err
	}
	rep, err := catalog.Verify(ctx, a, *jobs)
	if err != nil {
		return err
	}
	if *asJSON {
		type problem struct {
			Key   string `json:"key"`
			Error string `json:"error"`
		}
		var ps []problem
		for _, p := range rep.Problems {
			ps = append(ps, problem{p.Key, p.Err.Error()})
		}
		if err := json.NewEncoder(stdout).Encode(map[string]any{"archive": a.Name, "objects": rep.Objects, "bytes": rep.Bytes, "ok": rep.OK(), "problems": ps, "paths": rep.Paths}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "verify archive %s: %d objects, %s checked\n", a.Name, rep.Objects, size(rep.Bytes))
		for _, p := range rep.Paths {
			fmt.Fprintf(stdout, "  backup %s: WAL continuous from %s to %s (%d segments, timeline %d)\n", p.Backup, p.From, p.To, p.Segments, p.Target)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(stdout, "  PROBLEM %s\n", p)
		}
		for _, s := range rep.Skipped {
			fmt.Fprintf(stdout, "  skipped (give --encryption-key-file to check): %s\n", s)
		}
	}
	if !rep.OK() {
		return &failedError{code: cli.ExitFailure, err: fmt.Errorf("archive %s: %d problems, first: %s", a.Name, len(rep.Problems), rep.Problems[0])}
	}
	return nil
}

// openChecked validates the shared flags, then opens the archive.
func openChecked(ctx context.Context, c *cli.Common) (*archive.Archive, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	return c.OpenArchive(ctx)
}
