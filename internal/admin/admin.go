// Package admin is what walstored's admin commands report, built from the
// catalog and printed for people (tables, one line per fact) or for
// scripts (JSON). Every JSON document follows one style: snake_case keys,
// [] for an empty list (never null), times in RFC 3339 (null when
// unknown), WAL positions and file names as PostgreSQL prints them.
package admin

import (
	"encoding/json"
	"fmt"
	"io"
)

// JSON writes v as one indented JSON document.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Size formats a byte count.
func Size(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.2f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Count says "1 backup", "2 backups", "0 backups".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
