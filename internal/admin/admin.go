// Package admin is what walstored's admin commands report, built from the
// catalog and printed for people (tables, one line per fact) or for
// scripts (JSON). Every JSON document follows one style: snake_case keys,
// [] for an empty list (never null), times in RFC 3339 (null when
// unknown), WAL positions and file names as PostgreSQL prints them.
package admin

import (
	"encoding/json"
	"io"

	"github.com/walstore/walstore/base/units"
)

// JSON writes v as one indented JSON document.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Size and Count are units.Size and units.Count, for the printers.
var (
	Size  = units.Size
	Count = units.Count
)
