// Package retrystore wraps a store.Store so that every call that fails for
// a passing reason (a 503, a reset connection, a store restarting) is
// tried again with exponential backoff until it succeeds, fails for good
// (errkind.Permanent) or the caller's context ends. Everything that talks to
// a repository goes through it: a push, each part of a base backup, the
// catalog's reads, retention's deletes. A body is sent again from its
// start (Body.Rewind); one that can be read only once is not retried.
package retrystore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Options tune the retries.
type Options struct {
	Backoff store.Backoff
	// FailFast, when it reports true for an error, ends the retries at
	// once (a walstored that refuses connections, for a caller that would
	// rather try elsewhere or let PostgreSQL call again).
	FailFast func(error) bool
	// FailFastFirst is FailFast until the store first answered a call:
	// "not running" is reported at once, a restart in the middle of a
	// long job is ridden out.
	FailFastFirst func(error) bool
	// Log, when set, gets one line per failed attempt.
	Log *slog.Logger
}

// Store is the retrying wrapper.
type Store struct {
	inner    store.Store
	opt      Options
	answered atomic.Bool // some call reached the store
}

// New wraps inner.
func New(inner store.Store, opt Options) *Store { return &Store{inner: inner, opt: opt} }

// Unwrap returns the store inside.
func (s *Store) Unwrap() store.Store { return s.inner }

func (s *Store) retry(ctx context.Context, op, key string, fn func(context.Context) error) error {
	attempt := 0
	return store.Retry(ctx, s.opt.Backoff, func(ctx context.Context) error {
		attempt++
		err := fn(ctx)
		if err != nil && s.opt.FailFast != nil && s.opt.FailFast(err) {
			return store.Final(err)
		}
		if s.opt.FailFastFirst != nil {
			if err != nil && !s.answered.Load() && s.opt.FailFastFirst(err) {
				return store.Final(err)
			}
			if err == nil || !s.opt.FailFastFirst(err) {
				s.answered.Store(true)
			}
		}
		if err != nil && s.opt.Log != nil && !errkind.Permanent(err) && ctx.Err() == nil {
			s.opt.Log.Debug("store call failed; retrying", "op", op, "key", key, "attempt", attempt, "error", err.Error())
		}
		return err
	})
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	first := true
	return s.retry(ctx, "put", key, func(ctx context.Context) error {
		if !first {
			if err := body.Rewind(); err != nil {
				return err
			}
		}
		first = false
		return s.inner.Put(ctx, key, body)
	})
}

// Get implements store.Store: opening the object is retried; a failure
// while reading it is the caller's to handle.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.retry(ctx, "get", key, func(ctx context.Context) error {
		var err error
		rc, err = s.inner.Get(ctx, key)
		return err
	})
	return rc, err
}

// Load implements store.Loader: the get and the consumer are retried
// together, so a body cut off or damaged on the way is read again (a
// corrupt one once more, never more: store.Retry's rule).
func (s *Store) Load(ctx context.Context, key string, consume func(io.Reader) error) error {
	return s.retry(ctx, "load", key, func(ctx context.Context) error {
		rc, err := s.inner.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		return consume(rc)
	})
}

// GetRange implements store.Ranger, retried like Get.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.retry(ctx, "get", key, func(ctx context.Context) error {
		var err error
		rc, err = store.GetRange(ctx, s.inner, key, off, n)
		return err
	})
	return rc, err
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	var info store.Info
	err := s.retry(ctx, "stat", key, func(ctx context.Context) error {
		var err error
		info, err = s.inner.Stat(ctx, key)
		return err
	})
	return info, err
}

// List implements store.Store. A listing that fails before fn saw an
// entry is retried; once entries were delivered it is not (fn would see
// them twice).
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	delivered := false
	var fnErr error
	err := s.retry(ctx, "list", prefix, func(ctx context.Context) error {
		err := s.inner.List(ctx, prefix, func(i store.Info) error {
			delivered = true
			if err := fn(i); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if err != nil && (delivered || fnErr != nil) {
			return permanent{err}
		}
		return err
	})
	var p permanent
	if errors.As(err, &p) {
		return p.err
	}
	return err
}

// permanent stops the retry loop without changing the error's kind.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return context.Canceled }

// Delete implements store.Store. A delete whose first attempt may have
// reached the store and is retried can find the object gone: that is
// success.
func (s *Store) Delete(ctx context.Context, key string) error {
	attempts := 0
	err := s.retry(ctx, "delete", key, func(ctx context.Context) error {
		attempts++
		return s.inner.Delete(ctx, key)
	})
	if attempts > 1 && errors.Is(err, errkind.ErrNotFound) {
		return nil
	}
	return err
}

// Replace implements store.Replacer when the store inside does.
func (s *Store) Replace(ctx context.Context, key string, old store.Info, body store.Body) error {
	r, ok := store.As[store.Replacer](s.inner)
	if !ok {
		return s.inner.Put(ctx, key, body) // reports what the inner store says: exists
	}
	first := true
	return s.retry(ctx, "replace", key, func(ctx context.Context) error {
		if !first {
			if err := body.Rewind(); err != nil {
				return err
			}
		}
		first = false
		return r.Replace(ctx, key, old, body)
	})
}
