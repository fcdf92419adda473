package archive

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Outcome says what a put did.
type Outcome int

const (
	// Stored: the object was written now.
	Stored Outcome = iota + 1
	// AlreadyStored: an intact object with the same content (the same
	// SHA-256 of the raw bytes) was there already; nothing was written.
	AlreadyStored
	// Repaired: an object with the same content was there but failed
	// verification; it was replaced by the new, verified body.
	Repaired
	// KeptBeside: a .backup file whose name was taken by other content
	// was stored beside it (Layout.LabelCopy); the first stays.
	KeptBeside
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case AlreadyStored:
		return "already archived"
	case Repaired:
		return "repaired"
	case KeptBeside:
		return "kept beside another label of the same name"
	}
	return "unknown"
}

// BodyDone says whether the store took the whole body and answered
// after it: the body's memory may then be reused. After AlreadyStored
// it may not: the store refused the name (S3's put-if-absent, walstored's
// "exists") possibly before it had read the body, and the request that
// sends it may still be reading it (the race detector caught an HTTP
// transport's write loop doing so).
func (o Outcome) BodyDone() bool { return o == Stored || o == Repaired }

// PutObject writes an encoded object under key (see PutEnvelope).
func PutObject(ctx context.Context, s store.Store, key string, obj *envelope.Object) (Outcome, error) {
	return PutEnvelope(ctx, s, key, obj.Header, store.Bytes(obj.Bytes()))
}

// PutEnvelope writes the envelope body (whose header is hdr) under key if
// the name is free. If the name is taken it compares content: another
// digest is a *ConflictError and nothing changes; the same digest is
// success (AlreadyStored), once the stored copy is checked. A stored copy
// that fails its check is replaced by body, atomically and only if the
// store can (store.Replacer): Repaired. This is the only place that
// decides idempotency, so every store, and walstored in front of them,
// agrees.
//
// A body that can be read only once (a large object streamed through
// walstored) is not sent to a name that is already taken: the stored
// copy is looked at first.
func PutEnvelope(ctx context.Context, s store.Store, key string, hdr envelope.Header, body store.Body) (Outcome, error) {
	rewindable := body.Rewind() == nil
	if _, inMemory := body.(store.ReaderAtBody); !inMemory {
		if _, err := s.Stat(ctx, key); err == nil {
			return settleExisting(ctx, s, key, hdr, body, nil)
		} else if !errors.Is(err, errkind.ErrNotFound) {
			return 0, err
		}
		rewindable = false
	}
	var note store.PutNote
	putErr := s.Put(store.WithPutNote(ctx, &note), key, body)
	if putErr == nil && note.Repaired {
		return Repaired, nil
	}
	if putErr == nil {
		return Stored, nil
	}
	if !errors.Is(putErr, errkind.ErrExists) {
		return 0, putErr
	}
	if rewindable && body.Rewind() == nil {
		return settleExisting(ctx, s, key, hdr, body, putErr)
	}
	return settleExisting(ctx, s, key, hdr, nil, putErr)
}

// settleExisting decides what a taken name means for a put of hdr.
func settleExisting(ctx context.Context, s store.Store, key string, hdr envelope.Header, body store.Body, putErr error) (Outcome, error) {
	// walstored already compared (and repaired) at its door.
	var ee *store.ExistsError
	if errors.As(putErr, &ee) && ee.Identity != "" {
		stored, err := envelope.ParseDigest(ee.Identity)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		if stored != hdr.Digest {
			return 0, &ConflictError{Key: key, Stored: stored, New: hdr.Digest}
		}
		return AlreadyStored, nil
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("read the stored %s to compare: %w", key, err)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("read the stored %s to compare: %w", key, err)
	}
	defer rc.Close()
	stored, verr := envelope.ReadHeader(rc)
	if verr == nil && stored.Digest != hdr.Digest {
		return 0, &ConflictError{Key: key, Stored: stored.Digest, New: hdr.Digest}
	}
	if verr == nil {
		verr = stored.CheckName(Identity(key))
	}
	if verr == nil {
		verr = envelope.VerifyPayload(stored, rc, nil)
	}
	if verr == nil {
		return AlreadyStored, nil
	}
	if !errors.Is(verr, errkind.ErrCorrupt) {
		return 0, fmt.Errorf("read the stored %s to compare: %w", key, verr)
	}
	// The stored copy is damaged: this push carries the content it should
	// have held. Replace it, if the store can and we still have the body.
	r, ok := store.As[store.Replacer](s)
	if !ok || body == nil {
		return 0, fmt.Errorf("%w: the stored %s is damaged (%v) and cannot be replaced here; walstored repairs it when the file is pushed through it", errkind.ErrCorrupt, key, verr)
	}
	if err := r.Replace(ctx, key, info, body); err != nil {
		return 0, fmt.Errorf("repair the damaged %s: %w", key, err)
	}
	return Repaired, nil
}

// Identify returns the content identity of an envelope read from r: its
// raw SHA-256 in hex (what multistore compares copies by).
func Identify(_ string, r io.Reader) (string, error) {
	hdr, err := envelope.ReadHeader(r)
	if err != nil {
		return "", err
	}
	return hdr.Digest.String(), nil
}

// VerifyCopy checks a stored copy under key without keys: what the
// multi-store runs on every copy it serves.
func VerifyCopy(key string, r io.Reader) error {
	_, err := envelope.Verify(r, Identity(key), nil)
	return err
}
