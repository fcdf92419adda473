// Package cachestore wraps a store.Store with a bounded in-memory cache of
// recently written and read objects, and coalesces concurrent reads of one
// key into a single read of the store behind it (singleflight). When N
// standbys ask walstored for the same new segment, the store is read once,
// often not at all because the push just put it in the cache.
//
// Objects are write-once, so a cached copy cannot go stale by an update;
// Delete and Replace evict. A delete made through another walstored
// sharing the same store is noticed too: an entry older than Revalidate
// is served only after a Stat of the store says the object is still
// there (a stat costs far less than a read), and entries expire after
// MaxAge. A body held in memory is cached by reference, not copied; one
// in shared memory (store.SharedBytes, walstored's recycled WAL buffers)
// is held while cached and while each reader of it is open, and counts
// its whole buffer against MaxBytes.
package cachestore

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/freelist"
	"github.com/walstore/walstore/store"
)

// Options bound the cache.
type Options struct {
	MaxBytes  int64         // total cached bytes (default 256 MiB)
	MaxObject int64         // larger objects pass through uncached (default 32 MiB)
	MaxAge    time.Duration // entry lifetime (default 10 minutes)
	// Revalidate: an entry older than this is served only once a Stat
	// says the object is still in the store (default 2 s; the fresh
	// segment many standbys ask for at once is served from memory alone).
	Revalidate time.Duration
	// Admit says which objects may be cached (nil: all). The others pass
	// through: a restore reading gigabytes of backup packs once must not
	// push out the WAL that standbys read again and again.
	Admit func(key string) bool
}

// Stats counts cache activity (for metrics).
type Stats struct {
	Hits, Misses, Coalesced, Evictions int64
	Bytes                              int64
}

// Store is the caching wrapper.
type Store struct {
	inner store.Store
	opt   Options
	group singleflight.Group

	mu      sync.Mutex
	lru     *list.List // of *entry, front = most recent
	entries map[string]*list.Element
	bytes   int64
	stats   Stats
}

type entry struct {
	key    string
	data   []byte
	size   int64         // counted against MaxBytes
	shared *store.Shared // the memory, held while cached (nil: not shared)
	mtime  time.Time
	added  time.Time
}

// hold takes a hold on e's memory for a reader (under s.mu, so that an
// eviction cannot give it back in between).
func (e *entry) hold() {
	if e.shared != nil {
		e.shared.Hold()
	}
}

// release gives up a hold taken by hold.
func (e *entry) release() {
	if e.shared != nil {
		e.shared.Release()
	}
}

// reader reads b, part of e's memory, under a hold taken by hold, which
// Close gives up.
func (e *entry) reader(b []byte) io.ReadCloser {
	r := reader(b).(*memReader)
	if e.shared != nil {
		r.release = e.shared.Release
	}
	return r
}

// New wraps inner.
func New(inner store.Store, opt Options) *Store {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 256 << 20
	}
	if opt.MaxObject <= 0 {
		opt.MaxObject = 32 << 20
	}
	if opt.MaxAge <= 0 {
		opt.MaxAge = 10 * time.Minute
	}
	if opt.Revalidate <= 0 {
		opt.Revalidate = 2 * time.Second
	}
	return &Store{inner: inner, opt: opt, lru: list.New(), entries: map[string]*list.Element{}}
}

func (s *Store) admits(key string) bool { return s.opt.Admit == nil || s.opt.Admit(key) }

// Unwrap returns the store behind the cache.
func (s *Store) Unwrap() store.Store { return s.inner }

// Uncached implements store.Cache.
func (s *Store) Uncached() store.Store { return s.inner }

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Bytes = s.bytes
	return st
}

// lookup finds key's entry and takes a hold on its memory, which the
// caller gives up (release, or the Close of e.reader).
func (s *Store) lookup(key string) (*entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry)
	if time.Since(e.added) > s.opt.MaxAge {
		s.removeLocked(el)
		return nil, false
	}
	s.lru.MoveToFront(el)
	e.hold()
	return e, true
}

func (s *Store) add(key string, data []byte, shared *store.Shared, mtime time.Time) {
	if int64(len(data)) > s.opt.MaxObject {
		return
	}
	e := &entry{key: key, data: data, size: int64(len(data)), mtime: mtime, added: time.Now()}
	if shared != nil {
		shared.Hold()
		e.shared, e.size = shared, int64(cap(shared.Bytes()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.entries[key]; ok {
		s.removeLocked(el)
	}
	s.entries[key] = s.lru.PushFront(e)
	s.bytes += e.size
	for s.bytes > s.opt.MaxBytes {
		s.removeLocked(s.lru.Back())
		s.stats.Evictions++
	}
}

func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	s.lru.Remove(el)
	delete(s.entries, e.key)
	s.bytes -= e.size
	e.release()
}

// Evict drops key from the cache (an object deleted or replaced behind
// the cache's back, e.g. through another walstored).
func (s *Store) Evict(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.entries[key]; ok {
		s.removeLocked(el)
	}
}

func (s *Store) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// Put implements store.Store; a stored object that is held in memory
// (store.Bytes) and small enough is then cached, by reference.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	if err := s.inner.Put(ctx, key, body); err != nil {
		return err
	}
	if !s.admits(key) {
		return nil
	}
	if b, ok := body.(interface{ Bytes() []byte }); ok {
		var shared *store.Shared
		if sb, ok := body.(interface{ Shared() *store.Shared }); ok {
			shared = sb.Shared()
		}
		s.add(key, b.Bytes(), shared, time.Now())
	}
	return nil
}

// Replace implements store.Replacer when the store behind does.
func (s *Store) Replace(ctx context.Context, key string, old store.Info, body store.Body) error {
	r, ok := store.As[store.Replacer](s.inner)
	if !ok {
		return fmt.Errorf("%w: replace %s: %s cannot replace objects", errkind.ErrInvalid, key, store.Describe(s.inner))
	}
	s.Evict(key)
	defer s.Evict(key)
	return r.Replace(ctx, key, old, body)
}

// errTooBig tells coalesced readers to read the store themselves.
var errTooBig = errors.New("object too large to share")

// Get implements store.Store. Concurrent Gets of one key share one read
// of the store behind; objects up to MaxObject are then served from
// memory. Each caller waits only as long as its own context allows.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !s.admits(key) {
		return s.inner.Get(ctx, key)
	}
	if e, ok := s.lookup(key); ok {
		if time.Since(e.added) <= s.opt.Revalidate {
			s.count(func(st *Stats) { st.Hits++ })
			return e.reader(e.data), nil
		}
		_, err := s.inner.Stat(ctx, key)
		switch {
		case err == nil:
			s.count(func(st *Stats) { st.Hits++ })
			return e.reader(e.data), nil
		case errors.Is(err, errkind.ErrNotFound):
			e.release()
			s.Evict(key) // deleted behind this cache (another walstored)
			return nil, err
		}
		// The store did not answer: read it the ordinary way below.
		e.release()
	}
	ch := s.group.DoChan(key, func() (any, error) {
		// Detached from the first caller's context: one caller giving up
		// must not fail the others waiting on the same read.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		rc, err := s.inner.Get(rctx, key)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		// An object whose size the store tells (a file) is read into a
		// buffer of the cache's own, given back when it is evicted and
		// no longer read; each caller then takes its hold through
		// lookup. A fresh buffer per read costs a page fault per 4 KiB
		// and the zeroing of reused heap.
		if n, ok := sizeOf(rc); ok && n >= minShared && n <= s.opt.MaxObject {
			bp := missBuffers.Get()
			if int64(cap(*bp)) < n {
				*bp = make([]byte, 0, max(n, sharedCap))
			}
			data := (*bp)[:n]
			if _, err := io.ReadFull(rc, data); err != nil {
				return nil, err
			}
			sh := store.NewShared(data, recycleMiss)
			s.add(key, data, sh, time.Now())
			sh.Release()
			return cachedHere{}, nil
		}
		data, err := io.ReadAll(io.LimitReader(rc, s.opt.MaxObject+1))
		if err != nil {
			return nil, err
		}
		if int64(len(data)) > s.opt.MaxObject {
			return nil, errTooBig
		}
		s.add(key, data, nil, time.Now())
		return data, nil
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("get %s: %w", key, ctx.Err())
	}
	if res.Shared {
		s.count(func(st *Stats) { st.Coalesced++ })
	} else {
		s.count(func(st *Stats) { st.Misses++ })
	}
	if errors.Is(res.Err, errTooBig) {
		return s.inner.Get(ctx, key)
	}
	if res.Err != nil {
		return nil, res.Err
	}
	if _, ok := res.Val.(cachedHere); ok {
		if e, ok := s.lookup(key); ok {
			return e.reader(e.data), nil
		}
		return s.inner.Get(ctx, key) // evicted already: read past the cache
	}
	return reader(res.Val.([]byte)), nil
}

// cachedHere is a read's result that is in the cache, in shared memory:
// each caller takes its own hold (lookup).
type cachedHere struct{}

// Read buffers of the cache (objects of at least minShared bytes), kept
// for reuse when the cache evicts what they hold.
const (
	minShared = 128 << 10
	sharedCap = 17 << 20 // a 16 MiB segment's envelope
)

var missBuffers = freelist.New(4, 0)

func recycleMiss(b []byte) {
	b = b[:0]
	missBuffers.Put(&b)
}

// sizeOf is the size a store's reader knows without another request.
func sizeOf(rc io.ReadCloser) (int64, bool) {
	if r, ok := rc.(interface{ Size() int64 }); ok && r.Size() >= 0 {
		return r.Size(), true
	}
	return 0, false
}

// GetRange implements store.Ranger: from memory when the object is
// cached, else from the store behind (a part is never cached).
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := store.ValidRange(key, off, n); err != nil {
		return nil, err
	}
	if e, ok := s.lookup(key); ok {
		if time.Since(e.added) <= s.opt.Revalidate {
			s.count(func(st *Stats) { st.Hits++ })
			start := min(off, int64(len(e.data)))
			return e.reader(e.data[start:min(start+n, int64(len(e.data)))]), nil
		}
		e.release()
	}
	return store.GetRange(ctx, s.inner, key, off, n)
}

func reader(b []byte) io.ReadCloser { return &memReader{Reader: bytes.NewReader(b), n: int64(len(b))} }

type memReader struct {
	*bytes.Reader
	n       int64
	release func() // gives up the hold on shared memory (nil: none)
	closed  atomic.Bool
}

func (m *memReader) Close() error {
	if m.release != nil && !m.closed.Swap(true) {
		m.release()
	}
	return nil
}
func (m *memReader) Size() int64 { return m.n }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	return s.inner.Stat(ctx, key)
}

// List implements store.Store (never cached: it must see deletes and
// other writers at once).
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	return s.inner.List(ctx, prefix, fn)
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	s.Evict(key)
	return s.inner.Delete(ctx, key)
}
