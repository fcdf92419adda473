// Package memstore is a store.Store in memory: what restic's mem backend
// and fstest.MapFS are to their projects. Wrapper and repository tests run
// against it in milliseconds, with no file system, server or fsync; it
// keeps the full Store contract (it passes storetest) and can replace
// objects (store.Replacer).
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Store is an in-memory store.Store.
type Store struct {
	mu      sync.Mutex
	objects map[string]object
	version int64
}

type object struct {
	data    []byte
	mtime   time.Time
	version string
}

// New returns an empty store.
func New() *Store { return &Store{objects: map[string]object{}} }

// Describe implements store.Describer.
func (s *Store) Describe() string { return "mem://" }

// read takes the whole body, checked against its length.
func read(ctx context.Context, body store.Body) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(store.Exact(body))
	if err != nil {
		return nil, err
	}
	return b, ctx.Err()
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := s.parentFree(key); err != nil {
		return err
	}
	b, err := read(ctx, body)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[key]; ok {
		return fmt.Errorf("put %s: %w", key, errkind.ErrExists)
	}
	s.version++
	s.objects[key] = object{data: b, mtime: time.Now(), version: strconv.FormatInt(s.version, 10)}
	return nil
}

// parentFree refuses a key under an existing key or above one, as a file
// system would (a/k, then a/k/sub).
func (s *Store) parentFree(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < len(key); i++ {
		if key[i] != '/' {
			continue
		}
		if _, ok := s.objects[key[:i]]; ok {
			return fmt.Errorf("%w: put %s: %s is an object, not a directory", errkind.ErrInvalid, key, key[:i])
		}
	}
	for k := range s.objects {
		if strings.HasPrefix(k, key+"/") {
			return fmt.Errorf("%w: put %s: objects exist under that name", errkind.ErrInvalid, key)
		}
	}
	return nil
}

// Replace implements store.Replacer.
func (s *Store) Replace(ctx context.Context, key string, old store.Info, body store.Body) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	b, err := read(ctx, body)
	if err != nil {
		return fmt.Errorf("replace %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return fmt.Errorf("replace %s: %w", key, errkind.ErrNotFound)
	}
	if o.version != old.Version {
		return fmt.Errorf("replace %s: %w: the stored copy changed", key, errkind.ErrConflict)
	}
	s.version++
	s.objects[key] = object{data: b, mtime: time.Now(), version: strconv.FormatInt(s.version, 10)}
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	o, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, errkind.ErrNotFound)
	}
	return &reader{Reader: bytes.NewReader(o.data), n: int64(len(o.data))}, nil
}

// GetRange implements store.Ranger.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return store.SeekRange(ctx, s.Get, key, off, n)
}

type reader struct {
	*bytes.Reader
	n int64
}

func (r *reader) Close() error { return nil }
func (r *reader) Size() int64  { return r.n }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := store.ValidKey(key); err != nil {
		return store.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Info{}, err
	}
	s.mu.Lock()
	o, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, errkind.ErrNotFound)
	}
	return store.Info{Key: key, Size: int64(len(o.data)), ModTime: o.mtime, Version: o.version}, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	s.mu.Lock()
	var infos []store.Info
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, store.Info{Key: k, Size: int64(len(o.data)), ModTime: o.mtime, Version: o.version})
		}
	}
	s.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, i := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(i); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ListDirs implements store.DirLister.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	return store.ListDirs(ctx, plain{s}, prefix)
}

// plain hides ListDirs, so store.ListDirs falls back to List.
type plain struct{ *Store }

func (plain) ListDirs() {}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, errkind.ErrNotFound)
	}
	delete(s.objects, key)
	return nil
}

// Corrupt flips a byte of a stored object in place (tests of repair and
// verification).
func (s *Store) Corrupt(key string, offset int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[key]
	b := append([]byte(nil), o.data...)
	b[offset%len(b)] ^= 0x5A
	s.version++
	s.objects[key] = object{data: b, mtime: o.mtime, version: strconv.FormatInt(s.version, 10)}
}
