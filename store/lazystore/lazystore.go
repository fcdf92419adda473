// Package lazystore stands for a store that could not be opened when a
// program started (an S3 endpoint down): with several stores walstored
// starts anyway, and each use tries to open it again in the background, at
// most every few seconds, failing at once until then, so that requests
// never wait on an endpoint that is down.
package lazystore

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/walstore/walstore/store"
)

// Store opens its store on first use.
type Store struct {
	name string
	open func(context.Context) (store.Store, error)

	mu      sync.Mutex
	s       store.Store
	lastTry time.Time
	lastErr error
	trying  bool
	every   time.Duration
}

// get returns the store once it opened. Until then it fails at once and
// starts an attempt in the background (at most every 3 s): requests never
// wait on an endpoint that is down.
func (l *Store) get(ctx context.Context) (store.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		return l.s, nil
	}
	if !l.trying && time.Since(l.lastTry) >= l.every {
		l.trying, l.lastTry = true, time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := l.open(ctx)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.trying = false
			if err != nil {
				l.lastErr = err
				return
			}
			l.s = s
		}()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("store %s not reachable yet: %v", l.name, l.lastErr)
}

// New returns a store that opens itself with open; lastErr is why the
// first attempt failed. Attempts are at least every apart (default 3 s).
func New(name string, open func(context.Context) (store.Store, error), lastErr error, every time.Duration) *Store {
	if every <= 0 {
		every = 3 * time.Second
	}
	return &Store{name: name, open: open, lastErr: lastErr, lastTry: time.Now(), every: every}
}

// Describe implements store.Describer.
func (l *Store) Describe() string { return l.name }

// Unwrap returns the store once it opened (nil before).
func (l *Store) Unwrap() store.Store {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}

// Put implements store.Store.
func (l *Store) Put(ctx context.Context, key string, body store.Body) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Put(ctx, key, body)
}

// Get implements store.Store.
func (l *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, key)
}

// GetRange implements store.Ranger.
func (l *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return store.GetRange(ctx, s, key, off, n)
}

// Stat implements store.Store.
func (l *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	s, err := l.get(ctx)
	if err != nil {
		return store.Info{}, err
	}
	return s.Stat(ctx, key)
}

// List implements store.Store.
func (l *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.List(ctx, prefix, fn)
}

// Delete implements store.Store.
func (l *Store) Delete(ctx context.Context, key string) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}
