package store

import (
	"context"
	"fmt"
	"io"

	"github.com/walstore/walstore/base/errkind"
)

// Ranger is implemented by stores that can read a part of an object:
// GetRange returns the n bytes of key that start at off, which must lie
// within the object (fewer when the object ends first: the caller checks
// what it read), ErrNotFound if
// the object is absent, ErrInvalid for a negative off or n. It serves a
// reader that needs a few frames of a large object (a delta restore
// reading some blocks of a backup's pack); nothing is verified on the
// way, so the caller checks what it reads against what it expects.
// Wrappers implement it by passing it on (GetRange), so that a chain of
// stores reads only the part all the way down.
type Ranger interface {
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
}

// GetRange reads n bytes of key from off: through s's Ranger, or, for a
// store without one, by reading the object from its start and skipping
// off bytes (the same answer, at the cost of the read).
func GetRange(ctx context.Context, s Store, key string, off, n int64) (io.ReadCloser, error) {
	if err := ValidRange(key, off, n); err != nil {
		return nil, err
	}
	if r, ok := s.(Ranger); ok {
		return r.GetRange(ctx, key, off, n)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, rc, off); err != nil && err != io.EOF {
		rc.Close()
		return nil, err
	}
	return LimitReadCloser(rc, n), nil
}

// ValidRange checks a range's offset and length.
func ValidRange(key string, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("get %s: %w: range of %d bytes at %d", key, errkind.ErrInvalid, n, off)
	}
	return nil
}

// SeekRange is GetRange for a store whose Get returns a reader that can
// seek (a file, memory): the object opened with get, moved to off and
// cut at n bytes.
func SeekRange(ctx context.Context, get func(context.Context, string) (io.ReadCloser, error), key string, off, n int64) (io.ReadCloser, error) {
	if err := ValidRange(key, off, n); err != nil {
		return nil, err
	}
	rc, err := get(ctx, key)
	if err != nil {
		return nil, err
	}
	sk, ok := rc.(io.Seeker)
	if !ok {
		rc.Close()
		return nil, fmt.Errorf("get %s: the reader cannot seek", key)
	}
	if _, err := sk.Seek(off, io.SeekStart); err != nil {
		rc.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return LimitReadCloser(rc, n), nil
}

// LimitReadCloser reads at most n bytes of rc and closes rc.
func LimitReadCloser(rc io.ReadCloser, n int64) io.ReadCloser {
	return &limited{Reader: io.LimitReader(rc, n), c: rc}
}

type limited struct {
	io.Reader
	c io.Closer
}

func (l *limited) Close() error { return l.c.Close() }
