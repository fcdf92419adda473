package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
)

// lazyStore stands for a store that could not be opened when walstored
// started (an S3 endpoint down): with several stores walstored starts
// anyway, and each use tries to open it again, at most every few seconds.
type lazyStore struct {
	name string
	open func(context.Context) (archive.Store, error)

	mu      sync.Mutex
	s       archive.Store
	lastTry time.Time
	lastErr error
	trying  bool
}

// get returns the store once it opened. Until then it fails at once and
// starts an attempt in the background (at most every 3 s): requests never
// wait on an endpoint that is down.
func (l *lazyStore) get(context.Context) (archive.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		return l.s, nil
	}
	if !l.trying && time.Since(l.lastTry) >= 3*time.Second {
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
	return nil, fmt.Errorf("store %s not reachable yet: %v", l.name, l.lastErr)
}

func (l *lazyStore) Describe() string { return l.name }

func (l *lazyStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Put(ctx, key, r, size)
}

func (l *lazyStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, key)
}

func (l *lazyStore) Stat(ctx context.Context, key string) (archive.Info, error) {
	s, err := l.get(ctx)
	if err != nil {
		return archive.Info{}, err
	}
	return s.Stat(ctx, key)
}

func (l *lazyStore) List(ctx context.Context, prefix string, fn func(archive.Info) error) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.List(ctx, prefix, fn)
}

func (l *lazyStore) Delete(ctx context.Context, key string) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}
