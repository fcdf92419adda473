package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Sentinel errors. Stores and callers wrap them with context; check them
// with errors.Is.
var (
	// ErrNotFound: no object of that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: Put found an object of that name already stored. The
	// stored object is untouched.
	ErrExists = errors.New("already exists")
	// ErrConflict: an object of that name is stored with other content.
	ErrConflict = errors.New("stored with different content")
	// ErrInvalid: the input is malformed (name, size, header, URL, ...).
	ErrInvalid = errors.New("invalid")
	// ErrWrongSystem: a segment from another PostgreSQL cluster than the
	// one the archive is bound to.
	ErrWrongSystem = errors.New("belongs to another PostgreSQL system")
	// ErrCorrupt: a stored object fails its checks.
	ErrCorrupt = errors.New("corrupt object")
	// ErrNoSpace: the store is out of space or quota.
	ErrNoSpace = errors.New("no space left in store")
	// ErrUnauthorized: no valid credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: credentials valid, but not for this operation/archive.
	ErrForbidden = errors.New("forbidden")
	// ErrKey: an encrypted object cannot be opened with the key given.
	ErrKey = errors.New("cannot decrypt")
)

// Permanent reports whether retrying err cannot help: the answer was
// definite (not found, refused, invalid, corrupt input) rather than a
// failure to get an answer.
func Permanent(err error) bool {
	for _, e := range []error{ErrNotFound, ErrExists, ErrConflict, ErrInvalid, ErrWrongSystem,
		ErrUnauthorized, ErrForbidden, ErrKey, context.Canceled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is a flat, write-once object store. Keys are slash-separated paths
// (see ValidKey). Every implementation keeps this contract, and proves it by
// passing the storetest suite:
//
//   - Put stores exactly size bytes read from r under key, but only if no
//     object of that name exists. It returns nil only once the object is
//     durable (fsync'd, or acknowledged by the remote store), and an error
//     wrapping ErrExists, without touching the stored object, if the name is
//     taken. Of several concurrent Puts of one key exactly one succeeds.
//     Whatever happens (error, cancelled context, crash), a reader never
//     sees a partial object: the key is either absent or complete. If r is
//     an io.Seeker the store may rewind it to retry.
//   - Get returns the object's bytes; ErrNotFound if absent.
//   - Stat returns the object's size; ErrNotFound if absent.
//   - List calls fn once for each object whose key starts with prefix, in
//     ascending byte order of keys, and stops at fn's first error, which it
//     returns.
//   - Delete removes an object; ErrNotFound if absent.
//
// Every method honours ctx: it returns once ctx is done.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Stat(ctx context.Context, key string) (Info, error)
	List(ctx context.Context, prefix string, fn func(Info) error) error
	Delete(ctx context.Context, key string) error
}

// Describer is an optional interface for stores that can name themselves
// for messages (a URL without credentials).
type Describer interface{ Describe() string }

// Describe names a store for messages.
func Describe(s Store) string {
	if d, ok := s.(Describer); ok {
		return d.Describe()
	}
	return fmt.Sprintf("%T", s)
}

const (
	maxKeyLen       = 512
	maxComponentLen = 128
)

// ValidKey checks an object key: slash-separated components of ASCII
// letters, digits, '.', '_' and '-', none empty, none starting with '.'
// (stores keep their temporary files under dot names), at most 512 bytes.
// Keys that pass are safe as relative file paths and as URL paths.
func ValidKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%w: object key %q: empty or longer than %d bytes", ErrInvalid, printable(key), maxKeyLen)
	}
	for _, c := range strings.Split(key, "/") {
		if err := validComponent(c); err != nil {
			return fmt.Errorf("%w: object key %q: %v", ErrInvalid, printable(key), err)
		}
	}
	return nil
}

// ValidPrefix checks a List prefix: a key, a key with a trailing slash, a
// key whose last component is cut short, or "".
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if err := ValidKey(p); err != nil {
		return fmt.Errorf("%w: list prefix %q", ErrInvalid, printable(prefix))
	}
	return nil
}

func validComponent(c string) error {
	if c == "" {
		return errors.New("empty path component")
	}
	if len(c) > maxComponentLen {
		return fmt.Errorf("path component longer than %d bytes", maxComponentLen)
	}
	if c[0] == '.' {
		return errors.New("path component starts with '.'")
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-') {
			return fmt.Errorf("byte 0x%02X not allowed", b)
		}
	}
	return nil
}
