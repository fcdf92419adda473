package fetch

import (
	"os"
	"path/filepath"
)

// Mode is how PostgreSQL is recovering, read from its signal files. It
// decides how walfetch must fail when it cannot get an answer.
type Mode int

const (
	// NoRecovery: no signal file (pg_rewind, a manual call).
	NoRecovery Mode = iota
	// ArchiveRecovery: recovery.signal. PostgreSQL reads a failure as the
	// end of the archive and would finish recovery early, silently losing
	// the rest of the WAL, so walfetch must fail fatally instead.
	ArchiveRecovery
	// Standby: standby.signal. Any failure makes the standby retry later.
	Standby
)

func (m Mode) String() string {
	switch m {
	case ArchiveRecovery:
		return "archive recovery (recovery.signal)"
	case Standby:
		return "standby (standby.signal)"
	}
	return "no recovery signal file"
}

// DetectMode reads the signal files in pgdata. As in PostgreSQL,
// standby.signal wins when both exist.
func DetectMode(pgdata string) Mode {
	if _, err := os.Stat(filepath.Join(pgdata, "standby.signal")); err == nil {
		return Standby
	}
	if _, err := os.Stat(filepath.Join(pgdata, "recovery.signal")); err == nil {
		return ArchiveRecovery
	}
	return NoRecovery
}
