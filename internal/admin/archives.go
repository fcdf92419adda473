package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/store"
)

// ArchivesReport is walstored archives: every archive of a repository.
type ArchivesReport struct {
	Archives []catalog.Summary `json:"archives"`
	Stores   []store.Health    `json:"stores"`
}

// Summarize loads and sums up one archive.
func Summarize(ctx context.Context, a *archive.Archive, now time.Time, late time.Duration) (catalog.Summary, error) {
	inv, err := catalog.Load(ctx, a)
	if err != nil {
		return catalog.Summary{}, fmt.Errorf("archive %s: %w", a.Name, err)
	}
	sysid, err := a.SystemID(ctx)
	if err != nil && !errors.Is(err, errkind.ErrNotFound) {
		return catalog.Summary{}, fmt.Errorf("archive %s: %w", a.Name, err)
	}
	sum := catalog.Summarize(inv, sysid, now, late)
	if _, _, rec, err := a.LastRecords(ctx); err == nil && rec != nil {
		sum.RecompressSaved = rec.SavedTotal
	}
	return sum, nil
}

// Archives sums up every archive of the repository in s.
func Archives(ctx context.Context, s store.Store, now time.Time, late time.Duration) (ArchivesReport, error) {
	rep := ArchivesReport{Archives: []catalog.Summary{}, Stores: []store.Health{}}
	names, err := archive.Archives(ctx, s)
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		a, err := archive.New(s, n)
		if err != nil {
			return rep, err
		}
		sum, err := Summarize(ctx, a, now, late)
		if err != nil {
			return rep, err
		}
		rep.Archives = append(rep.Archives, sum)
	}
	return rep, nil
}

// PrintArchives prints the report as a table, then the reasons of every
// archive that is not ok.
func PrintArchives(w io.Writer, r ArchivesReport, now time.Time) {
	if len(r.Archives) == 0 {
		fmt.Fprintln(w, "no archives in this repository yet")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARCHIVE\tSYSTEM\tNEWEST SEGMENT\tAGE\tNEWEST BACKUP\tAGE\tRECOVERABLE FROM\tSIZE\tSAVED\tSTATE")
	for _, s := range r.Archives {
		sys := s.SystemID
		if s.Encrypted {
			sys += " (encrypted)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Archive, dash(sys), dash(s.NewestSegment), age(now, s.NewestWALTime),
			dash(s.NewestBackup), age(now, s.NewestBackupTime), stamp(s.RecoverableFrom), Size(s.WALBytes+s.BackupBytes), saved(s.RecompressSaved), s.State)
	}
	tw.Flush()
	for _, s := range r.Archives {
		for _, why := range s.Reasons {
			fmt.Fprintf(w, "%s: %s\n", s.Archive, why)
		}
	}
	for _, st := range r.Stores {
		if !st.Up || st.Owed > 0 {
			fmt.Fprintf(w, "store %s: up=%v, %s owed\n", st.Name, st.Up, Count(st.Owed, "object", "objects"))
		}
	}
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func age(now time.Time, t catalog.NullTime) string {
	if t.IsZero() {
		return "-"
	}
	return units.Age(now.Sub(t.Time))
}

func stamp(t catalog.NullTime) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// saved is what recompression saved, "-" before any pass did.
func saved(n int64) string {
	if n == 0 {
		return "-"
	}
	return Size(n)
}
