package store

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Unwrapper is implemented by wrappers: Unwrap returns the store inside.
type Unwrapper interface{ Unwrap() Store }

// As finds the first store of type T in s's chain of wrappers (s itself
// first), the way errors.As walks wrapped errors. Use it, never a type
// assertion on s, to reach an ability a wrapper may hide.
func As[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	var zero T
	return zero, false
}

// Describer names a store for messages (a URL without credentials).
type Describer interface{ Describe() string }

// Describe names a store for messages.
func Describe(s Store) string {
	if d, ok := s.(Describer); ok {
		return d.Describe()
	}
	if u, ok := s.(Unwrapper); ok {
		return Describe(u.Unwrap())
	}
	return fmt.Sprintf("%T", s)
}

// Waiter is implemented by stores that can wait for an object that is not
// stored yet (walstored's long poll): GetWait returns ErrNotFound only
// after waiting up to d.
type Waiter interface {
	GetWait(ctx context.Context, key string, d time.Duration) (io.ReadCloser, error)
}

// Replacer is implemented by stores that can replace an object
// atomically: Replace stores body under key in place of the copy old
// describes (old.Version), and fails with ErrConflict if the stored
// object is no longer that copy. It exists to repair a damaged copy and
// to store a smaller encoding of the same content; the caller, not the
// store, proves the new body is the same content.
type Replacer interface {
	Replace(ctx context.Context, key string, old Info, body Body) error
}

// Checker is implemented by stores made of several (multistore): Check
// returns nil when enough of them answer and accept writes, each checked
// with Probe(probe).
type Checker interface {
	Check(ctx context.Context, probe string) error
}

// Probe checks that s answers and accepts writes: it stores a small
// object under probe and deletes it again. probe must be a key that
// exists nowhere and that no one else uses (a fresh random name). A
// store with a Checker (several stores behind one) checks each.
func Probe(ctx context.Context, s Store, probe string) error {
	if c, ok := As[Checker](s); ok {
		return c.Check(ctx, probe)
	}
	if err := s.Put(ctx, probe, Bytes([]byte("walstore write probe\n"))); err != nil {
		return err
	}
	return s.Delete(ctx, probe)
}

// Health is what is known of one store behind a wrapper.
type Health struct {
	Name      string    `json:"name"`
	Up        bool      `json:"up"`
	LastError string    `json:"last_error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	Owed      int       `json:"owed_objects"`
	// FreeBytes and CapacityBytes are the space left and the size of the
	// file system of a file store (0 for object stores, which have no
	// such limit to watch).
	FreeBytes     int64 `json:"free_bytes,omitempty"`
	CapacityBytes int64 `json:"capacity_bytes,omitempty"`
	// StoredBytes is what the archives hold, as the last catalog scan
	// counted it (walstored fills it in; a member that owes objects holds
	// that much less).
	StoredBytes int64 `json:"stored_bytes"`
}

// Reporter is implemented by stores that keep health per member store
// (multistore).
type Reporter interface{ Health() []Health }

// Spacer is implemented by stores on a file system (the file store):
// Space returns the bytes free to the store's writer and the file
// system's size.
type Spacer interface {
	Space() (free, capacity int64, err error)
}

// HealthOf is what is known of each store behind s: a Reporter's
// members, or s itself (up, as far as a wrapper can tell), with the
// space left where the store has a file system.
func HealthOf(s Store) []Health {
	var out []Health
	var members []Store
	if r, ok := As[Reporter](s); ok {
		out = r.Health()
		if m, ok := As[Memberer](s); ok {
			members = m.MemberStores()
		}
	} else {
		out, members = []Health{{Name: Describe(s), Up: true}}, []Store{s}
	}
	for i := range out {
		if i >= len(members) {
			break
		}
		if sp, ok := As[Spacer](members[i]); ok {
			if free, capacity, err := sp.Space(); err == nil {
				out[i].FreeBytes, out[i].CapacityBytes = free, capacity
			}
		}
	}
	return out
}

// Memberer is implemented by stores made of several (multistore):
// their members, in the order Health reports them.
type Memberer interface{ MemberStores() []Store }

// DirLister is implemented by stores that can list the next path
// components under a prefix without listing every object below them (a
// directory's entries, S3's common prefixes): ListDirs returns the
// distinct components that follow prefix in some key, sorted.
type DirLister interface {
	ListDirs(ctx context.Context, prefix string) ([]string, error)
}

// ListDirs lists the path components under prefix, with s's DirLister when
// it (or a store it wraps) has one, else from a full listing.
func ListDirs(ctx context.Context, s Store, prefix string) ([]string, error) {
	if d, ok := As[DirLister](s); ok {
		return d.ListDirs(ctx, prefix)
	}
	seen := map[string]bool{}
	var out []string
	err := s.List(ctx, prefix, func(i Info) error {
		rest := strings.TrimPrefix(i.Key, prefix)
		c, _, _ := strings.Cut(rest, "/")
		if c != "" && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Cache is implemented by caching wrappers: Uncached is the store behind
// the cache, for readers that must see what the store holds now (admin
// commands).
type Cache interface{ Uncached() Store }
