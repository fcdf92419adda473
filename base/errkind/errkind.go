// Package errkind holds the sentinel errors every layer shares, so that a
// failure keeps its kind from the WAL parser or the file system up to the
// exit code. They are named here only: every package, from wal and store
// up to the commands, wraps and tests errkind.ErrNotFound,
// errkind.ErrInvalid, ... (errors.Is), and internal/cli maps them onto the
// exit codes. Errors that belong to one package alone (catalog.ErrGap,
// store.ErrNotRewindable, ...) stay in it.
package errkind

import (
	"context"
	"errors"
	"strconv"
)

var (
	// ErrNotFound: no object (or WAL file, backup, archive) of that name.
	ErrNotFound = errors.New("not found")
	// ErrExpired: not found (errors.Is ErrNotFound too), and older than
	// everything the archive still holds (removed by retention): no
	// waiting will bring it.
	ErrExpired error = expired{}
	// ErrExists: a write-once put found the name taken; nothing was written.
	ErrExists = errors.New("already exists")
	// ErrConflict: the name is stored with other content.
	ErrConflict = errors.New("stored with different content")
	// ErrInvalid: the input is malformed (name, size, header, URL, ...).
	ErrInvalid = errors.New("invalid")
	// ErrWrongSystem: a segment from another PostgreSQL cluster than the
	// one the archive is bound to.
	ErrWrongSystem = errors.New("belongs to another PostgreSQL system")
	// ErrCorrupt: a stored object fails its checks.
	ErrCorrupt = errors.New("corrupt object")
	// ErrNoSpace: the store is out of space or quota.
	ErrNoSpace = errors.New("no space left in store")
	// ErrReadOnly: the store answers but refuses writes (a distributed
	// store that lost its write quorum, a file system remounted read-only).
	// Not permanent: it may come back.
	ErrReadOnly = errors.New("the store refuses writes")
	// ErrUnauthorized: no valid credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: credentials valid, but not for this operation or key.
	ErrForbidden = errors.New("forbidden")
	// ErrKey: an encrypted object cannot be opened with the keys given.
	ErrKey = errors.New("cannot decrypt")
	// ErrConfig: the local configuration is unusable (a token, key or CA
	// file missing, empty or unreadable; a protocol mismatch). Retrying
	// cannot help: a person must fix it.
	ErrConfig = errors.New("configuration")
	// ErrBroken: an end-to-end check found a link that does not work
	// (walstored check: archiving does not reach the archive).
	ErrBroken = errors.New("broken link")
)

type expired struct{}

func (expired) Error() string { return "expired" }
func (expired) Unwrap() error { return ErrNotFound }

// Permanent reports whether retrying err cannot help: the answer was
// definite (not found, refused, invalid, corrupt input, bad local
// configuration) rather than a failure to get an answer. A corrupt object
// is not permanent here: read again, another copy may be good.
func Permanent(err error) bool {
	for _, e := range []error{ErrNotFound, ErrExists, ErrConflict, ErrInvalid, ErrWrongSystem,
		ErrUnauthorized, ErrForbidden, ErrKey, ErrConfig, ErrBroken, context.Canceled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Quote shortens and escapes a hostile string for an error message: at
// most 80 bytes, non-ASCII and control bytes escaped, no quotes around it.
func Quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}
