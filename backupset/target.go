package backupset

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// Target is a point-in-time recovery target: at most one of Time, LSN, XID
// and Name, plus what to do on reaching it.
type Target struct {
	Time     string
	LSN      string
	XID      string
	Name     string
	Action   string // promote (default), pause or shutdown
	Timeline string // latest (PostgreSQL's default), current, or a number
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 MST",
}

// Set reports whether a recovery target is given.
func (t Target) Set() bool { return t.Time != "" || t.LSN != "" || t.XID != "" || t.Name != "" }

// parsedTime returns the target time, if any.
func (t Target) parsedTime() (time.Time, bool, error) {
	if t.Time == "" {
		return time.Time{}, false, nil
	}
	for _, l := range timeLayouts {
		if v, err := time.Parse(l, t.Time); err == nil {
			return v, true, nil
		}
	}
	return time.Time{}, false, fmt.Errorf("%w: --target-time %q: want a time with its zone, e.g. \"2026-11-24 07:30:00+00\" or 2026-11-24T07:30:00Z", errkind.ErrInvalid, t.Time)
}

// Settings validates the target and returns its postgresql.conf lines.
// PostgreSQL's default action on reaching a target is to pause, which
// leaves people waiting on a server that never opens; walstore promotes
// unless told otherwise.
func (t Target) Settings() ([]string, error) {
	n := 0
	for _, v := range []string{t.Time, t.LSN, t.XID, t.Name} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("%w: give at most one of --target-time, --target-lsn, --target-xid and --target-name", errkind.ErrInvalid)
	}
	var lines []string
	if tm, ok, err := t.parsedTime(); err != nil {
		return nil, err
	} else if ok {
		lines = append(lines, "recovery_target_time = "+quoteConf(tm.UTC().Format("2006-01-02 15:04:05.999999")+"+00"))
	}
	if t.LSN != "" {
		l, err := wal.ParseLSN(t.LSN)
		if err != nil {
			return nil, fmt.Errorf("--target-lsn: %w", err)
		}
		lines = append(lines, "recovery_target_lsn = "+quoteConf(l.String()))
	}
	if t.XID != "" {
		if _, err := strconv.ParseUint(t.XID, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: --target-xid %q: want a transaction id (digits)", errkind.ErrInvalid, t.XID)
		}
		lines = append(lines, "recovery_target_xid = "+quoteConf(t.XID))
	}
	if t.Name != "" {
		if len(t.Name) > 63 || strings.IndexFunc(t.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return nil, fmt.Errorf("%w: --target-name %q: a restore point name is at most 63 printable bytes", errkind.ErrInvalid, t.Name)
		}
		lines = append(lines, "recovery_target_name = "+quoteConf(t.Name))
	}
	action := t.Action
	if action == "" {
		action = "promote"
	}
	switch action {
	case "promote", "pause", "shutdown":
	default:
		return nil, fmt.Errorf("%w: --target-action %q: want promote, pause or shutdown", errkind.ErrInvalid, t.Action)
	}
	if n == 1 {
		lines = append(lines, "recovery_target_action = "+quoteConf(action))
	}
	switch tl := t.Timeline; {
	case tl == "":
	case tl == "latest" || tl == "current":
		lines = append(lines, "recovery_target_timeline = "+quoteConf(tl))
	default:
		if v, err := strconv.ParseUint(tl, 10, 32); err != nil || v == 0 {
			return nil, fmt.Errorf("%w: --target-timeline %q: want latest, current or a timeline number", errkind.ErrInvalid, tl)
		}
		lines = append(lines, "recovery_target_timeline = "+quoteConf(tl))
	}
	return lines, nil
}

// quoteConf quotes a postgresql.conf string value.
func quoteConf(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// ShellQuote quotes one word for the shell PostgreSQL runs commands with.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:=,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
