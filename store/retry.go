package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/walstore/walstore/base/errkind"
)

// Backoff is an exponential backoff between attempts.
type Backoff struct {
	Initial time.Duration // first pause (default 100 ms)
	Max     time.Duration // longest pause (default 5 s)
	// Attempts bounds the number of calls (0: until ctx ends).
	Attempts int
}

// Retry calls fn until it succeeds, fails permanently (see Permanent),
// fails verification twice (ErrCorrupt) or ctx is done; pauses grow exponentially with jitter and never outlast
// ctx. The error returned is fn's last, with the number of attempts when
// more than one was made. Callers bound the whole by ctx's deadline:
// nothing here can hang.
func Retry(ctx context.Context, b Backoff, fn func(context.Context) error) error {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Second
	}
	delay := b.Initial
	var telling error // the last error that says more than "deadline"
	corrupt := 0
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		var fe *finalError
		if errors.As(err, &fe) {
			return err // still final for a Retry around this one
		}
		if err == nil || errkind.Permanent(err) || errors.Is(err, ErrNotRewindable) {
			return err
		}
		// A copy that fails verification is read once more (another copy,
		// or a transfer that went wrong), never more: a damaged object
		// stays damaged.
		if errors.Is(err, errkind.ErrCorrupt) {
			if corrupt++; corrupt >= 2 {
				return Final(gaveUp(err, attempt))
			}
		}
		if errors.Is(err, context.DeadlineExceeded) && telling != nil {
			err = fmt.Errorf("%w (then the deadline passed)", telling)
		} else {
			telling = err
		}
		if b.Attempts > 0 && attempt >= b.Attempts {
			return gaveUp(err, attempt)
		}
		pause := delay/2 + rand.N(delay/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < pause {
			pause = time.Until(dl)
		}
		if ctx.Err() != nil || pause <= 0 {
			return gaveUp(err, attempt)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return gaveUp(err, attempt)
		case <-t.C:
		}
		delay = min(delay*2, b.Max)
	}
}

// Final marks an error that ends a Retry at once although its kind could
// pass (a caller's own rule: a walstored that refused the connection when
// failing fast is better; a corrupt object read twice). It stays marked
// through Retry, so that a Retry around another one stops too.
func Final(err error) error { return &finalError{err} }

type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

func gaveUp(err error, attempts int) error {
	if attempts == 1 {
		return err
	}
	return fmt.Errorf("%w (gave up after %d attempts)", err, attempts)
}
