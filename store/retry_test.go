package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
)

func TestRetryRules(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fast := Backoff{Initial: time.Millisecond, Max: time.Millisecond}
	passing := errors.New("reset by peer")

	calls := 0
	err := Retry(ctx, fast, func(context.Context) error {
		if calls++; calls < 3 {
			return passing
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("passing errors: %v after %d calls", err, calls)
	}

	calls = 0
	err = Retry(ctx, fast, func(context.Context) error { calls++; return errkind.ErrCorrupt })
	if !errors.Is(err, errkind.ErrCorrupt) || calls != 2 {
		t.Fatalf("a corrupt object: %v after %d calls, want 2", err, calls)
	}

	calls = 0
	err = Retry(ctx, fast, func(context.Context) error { calls++; return errkind.ErrNotFound })
	if !errors.Is(err, errkind.ErrNotFound) || calls != 1 {
		t.Fatalf("a permanent error: %v after %d calls", err, calls)
	}

	// Final stops a Retry around another Retry too, and stays the error
	// it wraps.
	outer, inner := 0, 0
	err = Retry(ctx, fast, func(ctx context.Context) error {
		outer++
		return Retry(ctx, fast, func(context.Context) error { inner++; return Final(passing) })
	})
	if !errors.Is(err, passing) || outer != 1 || inner != 1 || err.Error() != passing.Error() {
		t.Fatalf("nested Final: %v after %d outer and %d inner calls", err, outer, inner)
	}
	outer, inner = 0, 0
	err = Retry(ctx, fast, func(ctx context.Context) error {
		outer++
		return Retry(ctx, fast, func(context.Context) error { inner++; return errkind.ErrCorrupt })
	})
	if !errors.Is(err, errkind.ErrCorrupt) || outer != 1 || inner != 2 {
		t.Fatalf("nested corrupt: %d outer, %d inner calls; want one read again, once", outer, inner)
	}
}
