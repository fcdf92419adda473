package door

import (
	"errors"
	"fmt"

	"github.com/walstore/walstore/base/errkind"
)

// What the door refuses, by the check that refused it (the handler maps
// each onto its HTTP answer).
var (
	// ErrNoLength: no length declared (411).
	ErrNoLength = fmt.Errorf("%w: Content-Length is required", errkind.ErrInvalid)
	// ErrTooLarge: more than an object may be (413).
	ErrTooLarge = fmt.Errorf("%w: too large", errkind.ErrInvalid)
	// ErrBusy: the memory budget is spent; retry (503, Retry-After).
	ErrBusy = errors.New("busy")
)

// Aborted is a body that could not be read to its end (the client went
// away or was too slow): nothing was stored, and it is not the store's
// fault. The handler wraps its body's read errors in it.
type Aborted struct{ Err error }

func (e *Aborted) Error() string { return "reading the request body: " + e.Err.Error() }
func (e *Aborted) Unwrap() error { return e.Err }

// Damaged is a body whose digests do not hold (damaged on the way):
// never stored, worth a retry by an honest client (422).
type Damaged struct{ Err error }

func (e *Damaged) Error() string {
	return "the body does not verify, nothing was stored (damaged on the way? send it again): " + e.Err.Error()
}
func (e *Damaged) Unwrap() error { return e.Err }

// BadWAL is a segment PostgreSQL could not replay to its end
// (unfinished, recycled, not WAL): refused, named where it stops.
type BadWAL struct{ Err error }

func (e *BadWAL) Error() string { return e.Err.Error() }
func (e *BadWAL) Unwrap() error { return e.Err }
