// Package store is tier 1 of a walstore repository: write-once objects of
// opaque bytes under slash-separated keys. It knows nothing of WAL,
// envelopes, archives or encryption; those are tier 2 (package archive),
// which decides what goes under which key and checks what comes back.
//
// Every backend (filestore, s3store, memstore, httpstore) and every wrapper
// (retrystore, cachestore, multistore, lazystore, instrument) implements
// Store and proves it by passing the same byte-level checker
// (storetest.Run). A cross-cutting feature is a wrapper around another
// Store, never a change to each backend. Wrappers expose what they wrap
// with Unwrap, and optional abilities (waiting for an object, replacing a
// damaged copy, health) are interfaces declared here, found with As.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
)

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	// Version names this copy of the object (an S3 ETag, a file's inode
	// and mtime): Replace acts only while the object is still that copy.
	// Empty when the store cannot tell.
	Version string
}

// Store is a flat, write-once object store. Keys are slash-separated
// paths (see ValidKey). Every implementation keeps this contract:
//
//   - Put stores exactly body.Len() bytes read from body under key, but
//     only if no object of that name exists. It returns nil only once the
//     object is durable (fsync'd, or acknowledged by the remote store), and
//     an error wrapping ErrExists, without touching the stored object, if
//     the name is taken. Of several concurrent Puts of one key exactly one
//     succeeds. Whatever happens (error, cancelled context, crash), a
//     reader never sees a partial object: the key is absent or complete. A
//     body longer or shorter than its Len is refused (ErrInvalid). Put
//     never closes the body and does not keep it after returning; it may
//     call Rewind to send it again.
//   - Get returns the object's bytes; ErrNotFound if absent.
//   - Stat returns the object's size; ErrNotFound if absent.
//   - List calls fn once for each object whose key starts with prefix, in
//     ascending byte order of keys, and stops at fn's first error, which it
//     returns. Every key it reports can be Stat'd and read with the same
//     size, unless deleted meanwhile.
//   - Delete removes an object; ErrNotFound if absent.
//
// Every method honours ctx: it returns once ctx is done.
type Store interface {
	Put(ctx context.Context, key string, body Body) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Stat(ctx context.Context, key string) (Info, error)
	List(ctx context.Context, prefix string, fn func(Info) error) error
	Delete(ctx context.Context, key string) error
}

// ExistsError may be returned (wrapped) by Put when the store already
// knows an identity of the stored object (walstored answers with the
// stored object's digest), sparing the caller a read. Identity is opaque
// at this tier.
type ExistsError struct {
	Key      string
	Identity string
}

func (e *ExistsError) Error() string { return fmt.Sprintf("%s: %v", e.Key, errkind.ErrExists) }
func (e *ExistsError) Unwrap() error { return errkind.ErrExists }

const (
	// MaxKeyLen bounds a key.
	MaxKeyLen       = 512
	maxComponentLen = 128
)

// ValidKey checks an object key: slash-separated components of ASCII
// letters, digits, '.', '_' and '-', none empty, none starting with '.'
// (stores keep their temporary files under dot names), at most 512 bytes.
// Keys that pass are safe as relative file paths and as URL paths.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: object key %q: empty or longer than %d bytes", errkind.ErrInvalid, errkind.Quote(key), MaxKeyLen)
	}
	for _, c := range strings.Split(key, "/") {
		if err := ValidComponent(c); err != nil {
			return fmt.Errorf("%w: object key %q: %v", errkind.ErrInvalid, errkind.Quote(key), err)
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
		return fmt.Errorf("%w: list prefix %q", errkind.ErrInvalid, errkind.Quote(prefix))
	}
	return nil
}

// ValidComponent checks one path component of a key.
func ValidComponent(c string) error {
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
