package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Outcome says what PutObject did.
type Outcome int

const (
	// Stored: the object was written now.
	Stored Outcome = iota + 1
	// AlreadyStored: an identical object (same SHA-256 of the raw bytes)
	// was there already; nothing was written.
	AlreadyStored
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case AlreadyStored:
		return "already archived"
	}
	return "unknown"
}

// ConflictError reports a name stored with other content. It wraps
// ErrConflict and names both checksums.
type ConflictError struct {
	Key    string
	Stored Digest
	New    Digest
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s is already stored with SHA-256 %s; refusing to replace it with SHA-256 %s", e.Key, e.Stored, e.New)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// ExistsError may be returned (wrapped) by a Store's Put when the store
// already knows the stored object's digest, sparing PutObject a read.
type ExistsError struct {
	Key    string
	Stored Digest
}

func (e *ExistsError) Error() string { return fmt.Sprintf("%s: %v", e.Key, ErrExists) }
func (e *ExistsError) Unwrap() error { return ErrExists }

// PutObject writes obj under key if the name is free. If the name is taken
// it compares digests: the same digest is success (AlreadyStored), another
// digest is a *ConflictError. This is the only place that decides
// idempotency, so every store, and the server in front of them, agrees.
func PutObject(ctx context.Context, s Store, key string, obj *Object) (Outcome, error) {
	return PutEnvelope(ctx, s, key, obj.Header, obj.Reader(), obj.Size())
}

// PutEnvelope is PutObject for an envelope that is streamed rather than
// held in memory: r yields the whole envelope (size bytes) whose header is
// hdr. It keeps the same idempotency rules.
func PutEnvelope(ctx context.Context, s Store, key string, hdr Header, r io.Reader, size int64) (Outcome, error) {
	err := s.Put(ctx, key, r, size)
	if err == nil {
		return Stored, nil
	}
	if !errors.Is(err, ErrExists) {
		return 0, err
	}
	stored, err := storedDigest(ctx, s, key, err)
	if err != nil {
		return 0, err
	}
	if stored != hdr.Digest {
		return 0, &ConflictError{Key: key, Stored: stored, New: hdr.Digest}
	}
	return AlreadyStored, nil
}

func storedDigest(ctx context.Context, s Store, key string, putErr error) (Digest, error) {
	var ee *ExistsError
	if errors.As(putErr, &ee) {
		return ee.Stored, nil
	}
	hdr, err := StatHeader(ctx, s, key)
	if err != nil {
		return Digest{}, fmt.Errorf("read the stored %s to compare: %w", key, err)
	}
	return hdr.Digest, nil
}

// StatHeader reads just the envelope header of a stored object.
func StatHeader(ctx context.Context, s Store, key string) (Header, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return Header{}, err
	}
	defer rc.Close()
	return ReadHeader(rc)
}

// GetObject opens a stored object and returns its header and a reader of
// the verified raw bytes (see Open).
func GetObject(ctx context.Context, s Store, key string) (Header, io.ReadCloser, error) {
	return GetObjectWith(ctx, s, key, nil)
}

// GetObjectWith is GetObject with the keys for encrypted objects.
func GetObjectWith(ctx context.Context, s Store, key string, kr *Keyring) (Header, io.ReadCloser, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return Header{}, nil, err
	}
	hdr, raw, err := OpenWith(rc, kr)
	if err != nil {
		rc.Close()
		return hdr, nil, fmt.Errorf("%s: %w", key, err)
	}
	return hdr, &closeBoth{ReadCloser: raw, under: rc}, nil
}

type closeBoth struct {
	io.ReadCloser
	under io.Closer
}

func (c *closeBoth) Close() error {
	c.ReadCloser.Close()
	return c.under.Close()
}
