// Package units formats quantities for people: sizes in binary units and
// counted nouns ("1 backup", "2 backups"). Parsing sizes and durations
// from flags is internal/cli's.
package units

import "fmt"

// Size formats a byte count: "512 B", "1.5 KiB", "23.1 MiB", "3.25 GiB".
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
