package archive

import (
	"fmt"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/internal/errkind"
)

// Sentinel errors, the same values every layer uses (see internal/errkind).
var (
	ErrNotFound     = errkind.ErrNotFound
	ErrExpired      = errkind.ErrExpired
	ErrExists       = errkind.ErrExists
	ErrConflict     = errkind.ErrConflict
	ErrInvalid      = errkind.ErrInvalid
	ErrWrongSystem  = errkind.ErrWrongSystem
	ErrCorrupt      = errkind.ErrCorrupt
	ErrNoSpace      = errkind.ErrNoSpace
	ErrUnauthorized = errkind.ErrUnauthorized
	ErrForbidden    = errkind.ErrForbidden
	ErrKey          = errkind.ErrKey
	ErrConfig       = errkind.ErrConfig
	ErrBroken       = errkind.ErrBroken
)

// Permanent reports whether retrying err cannot help.
func Permanent(err error) bool { return errkind.Permanent(err) }

// ConflictError reports a name stored with other content. It wraps
// ErrConflict and names both checksums.
type ConflictError struct {
	Key    string
	Stored envelope.Digest
	New    envelope.Digest
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s is already stored with SHA-256 %s; refusing to replace it with SHA-256 %s", e.Key, e.Stored, e.New)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// WrongSystemError reports a segment of another cluster than the archive's.
type WrongSystemError struct {
	Archive string
	Bound   uint64
	Got     uint64
}

func (e *WrongSystemError) Error() string {
	return fmt.Sprintf("archive %s belongs to PostgreSQL system %d; this file comes from system %d (another cluster, or a re-initialised one: use another --archive)", e.Archive, e.Bound, e.Got)
}

func (e *WrongSystemError) Unwrap() error { return ErrWrongSystem }
