package admin

import (
	"fmt"
	"io"
	"strings"

	"github.com/walstore/walstore/retention"
)

// PrintRetain prints what retention did (or would do).
func PrintRetain(w io.Writer, res retention.Result) {
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "retain archive %s: kept %s [%s]; %s %s [%s] and %s incomplete (%s, %s); %s %s (%s)",
		res.Archive, Count(len(res.Kept), "backup", "backups"), strings.Join(res.Kept, " "), verb, Count(len(res.DeletedBackups), "backup", "backups"), strings.Join(res.DeletedBackups, " "),
		fmt.Sprint(len(res.DeletedIncomplete)), Count(res.BackupObjects, "object", "objects"), Size(res.BackupBytes), verb, Count(res.WALFiles, "WAL file", "WAL files"), Size(res.WALBytes))
	if res.WALFiles > 0 {
		fmt.Fprintf(w, " %s .. %s", res.WALFirst, res.WALLast)
	}
	if res.PacksDeleted > 0 {
		fmt.Fprintf(w, "; %s %s no kept backup uses (%s)", verb, Count(res.PacksDeleted, "pack", "packs"), Size(res.PackBytes))
	}
	if res.KeepFrom != "" {
		fmt.Fprintf(w, "; WAL kept from %s", res.KeepFrom)
	}
	fmt.Fprintln(w)
}
