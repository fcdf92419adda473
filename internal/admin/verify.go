package admin

import (
	"fmt"
	"io"

	"github.com/walstore/walstore/catalog"
)

// PrintVerify prints a verify report for people.
func PrintVerify(w io.Writer, rep catalog.Report) {
	fmt.Fprintf(w, "verify archive %s: %s, %s checked", rep.Archive, Count(rep.Objects, "object", "objects"), Size(rep.Bytes))
	if rep.Reused > 0 {
		fmt.Fprintf(w, " (%d unchanged since the last verify found them intact, not read again; --full reads them)", rep.Reused)
	}
	fmt.Fprintln(w)
	for _, p := range rep.Paths {
		fmt.Fprintf(w, "  backup %s: WAL continuous from %s to %s (%s, timeline %d)\n", p.Backup, p.From, p.To, Count(p.Segments, "segment", "segments"), p.Target)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  PROBLEM %s\n", p)
	}
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "  WARNING %s\n", warn)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "  skipped (give --encryption-key-file to check): %s\n", s)
	}
}
