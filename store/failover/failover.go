// Package failover is one store reached through several endpoints:
// walstored instances in front of the same store. Each call goes to the
// endpoint that answered last; when it cannot be reached (connection
// refused, no route, connect timeout) the next one is tried at once, so a
// dead instance costs a call well under a second instead of its whole
// --timeout. Any other answer, an error included, is the store's answer:
// an instance that answers is not skipped because it said no.
package failover

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Store is the failover wrapper.
type Store struct {
	members     []store.Store
	unreachable func(error) bool
	cur         atomic.Int32
	// OnSwitch, if set, is told the index of an endpoint that answered
	// after the one before it could not be reached (to remember it).
	OnSwitch func(i int)
}

// New returns a store over members, starting with members[first];
// unreachable says which errors mean "try the next one".
func New(members []store.Store, first int, unreachable func(error) bool) (*Store, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: failover: no endpoint", errkind.ErrInvalid)
	}
	s := &Store{members: members, unreachable: unreachable}
	if first > 0 && first < len(members) {
		s.cur.Store(int32(first))
	}
	return s, nil
}

// Unwrap returns the endpoint in use (for abilities of one endpoint).
func (s *Store) Unwrap() store.Store { return s.members[s.cur.Load()] }

// Current is the index of the endpoint in use.
func (s *Store) Current() int { return int(s.cur.Load()) }

// Describe implements store.Describer.
func (s *Store) Describe() string {
	var names []string
	for _, m := range s.members {
		names = append(names, store.Describe(m))
	}
	return strings.Join(names, ",")
}

// Guarded is true when every endpoint is (walstored enforces the archive's
// rules).
func (s *Store) Guarded() bool {
	for _, m := range s.members {
		g, ok := m.(interface{ Guarded() bool })
		if !ok || !g.Guarded() {
			return false
		}
	}
	return true
}

// do runs fn on the endpoint in use and, while it cannot be reached, on
// the next ones; rewind prepares a retry on another endpoint.
func (s *Store) do(ctx context.Context, rewind func() error, fn func(store.Store) error) error {
	start := int(s.cur.Load())
	var errs []string
	var last error
	for n := 0; n < len(s.members); n++ {
		i := (start + n) % len(s.members)
		if n > 0 && rewind != nil {
			if err := rewind(); err != nil {
				return fmt.Errorf("%w (and it cannot be sent again to another endpoint: %v)", last, err)
			}
		}
		err := fn(s.members[i])
		if err != nil && s.unreachable(err) && ctx.Err() == nil {
			errs, last = append(errs, err.Error()), err
			continue
		}
		if n > 0 {
			s.cur.Store(int32(i))
			if s.OnSwitch != nil {
				s.OnSwitch(i)
			}
		}
		return err
	}
	if len(errs) == 1 {
		return last
	}
	// Still "unreachable" for the caller (errors.Is), naming every endpoint.
	return fmt.Errorf("no endpoint answered (%s): %w", strings.Join(errs[:len(errs)-1], "; "), last)
}

// Put implements store.Store. An endpoint that could not be reached has
// read nothing of the body; one that read some of it needs a body that
// can start again.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	t := &tracked{Body: body}
	rewind := func() error {
		if !t.read {
			return nil
		}
		t.read = false
		return body.Rewind()
	}
	return s.do(ctx, rewind, func(m store.Store) error { return m.Put(ctx, key, t) })
}

// tracked notes whether a body was read.
type tracked struct {
	store.Body
	read bool
}

func (t *tracked) Read(p []byte) (int, error) {
	t.read = true
	return t.Body.Read(p)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = s.do(ctx, nil, func(m store.Store) error {
		var e error
		rc, e = m.Get(ctx, key)
		return e
	})
	return rc, err
}

// GetRange implements store.Ranger on the endpoint Get would use.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (rc io.ReadCloser, err error) {
	err = s.do(ctx, nil, func(m store.Store) error {
		var e error
		rc, e = store.GetRange(ctx, m, key, off, n)
		return e
	})
	return rc, err
}

// GetWait implements store.Waiter through the endpoints that can wait.
func (s *Store) GetWait(ctx context.Context, key string, d time.Duration) (rc io.ReadCloser, err error) {
	err = s.do(ctx, nil, func(m store.Store) error {
		var e error
		if w, ok := store.As[store.Waiter](m); ok {
			rc, e = w.GetWait(ctx, key, d)
		} else {
			rc, e = m.Get(ctx, key)
		}
		return e
	})
	return rc, err
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (info store.Info, err error) {
	err = s.do(ctx, nil, func(m store.Store) error {
		var e error
		info, e = m.Stat(ctx, key)
		return e
	})
	return info, err
}

// List implements store.Store. A listing that failed part-way on one
// endpoint is not resumed on another (fn may have seen some entries).
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	seen := false
	return s.do(ctx, func() error {
		if seen {
			return fmt.Errorf("listing already started")
		}
		return nil
	}, func(m store.Store) error {
		return m.List(ctx, prefix, func(i store.Info) error {
			seen = true
			return fn(i)
		})
	})
}

// ListDirs implements store.DirLister.
func (s *Store) ListDirs(ctx context.Context, prefix string) (dirs []string, err error) {
	err = s.do(ctx, nil, func(m store.Store) error {
		var e error
		dirs, e = store.ListDirs(ctx, m, prefix)
		return e
	})
	return dirs, err
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, nil, func(m store.Store) error { return m.Delete(ctx, key) })
}
