package archive

import (
	"fmt"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
)

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

func (e *ConflictError) Unwrap() error { return errkind.ErrConflict }

// WrongSystemError reports a segment of another cluster than the archive's.
type WrongSystemError struct {
	Archive string
	Bound   uint64
	Got     uint64
}

func (e *WrongSystemError) Error() string {
	return fmt.Sprintf("archive %s belongs to PostgreSQL system %d; this file comes from system %d (another cluster, or a re-initialised one: use another --archive)", e.Archive, e.Bound, e.Got)
}

func (e *WrongSystemError) Unwrap() error { return errkind.ErrWrongSystem }
