package door

import (
	"errors"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal/waltest"
)

// The one idempotency rule: the same content again is AlreadyStored,
// other content under the name a conflict naming both digests.
func TestIdempotency(t *testing.T) {
	f := newFixture(t, 64<<20)
	key, body := f.segment("000000010000000000000002")
	if res, err := f.put(key, body); err != nil || res.Outcome != archive.Stored {
		t.Fatalf("first: %+v %v", res, err)
	}
	if res, err := f.put(key, body); err != nil || res.Outcome != archive.AlreadyStored {
		t.Fatalf("again: %+v %v", res, err)
	}
	n := waltest.Name("000000010000000000000002")
	other := f.envelope(key, 7, waltest.OtherSegment(7, n, segSize, 9))
	var ce *archive.ConflictError
	if _, err := f.put(key, other); !errors.Is(err, errkind.ErrConflict) || !errors.As(err, &ce) {
		t.Fatalf("other content: %v", err)
	}
}
