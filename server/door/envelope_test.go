package door

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// A body damaged on the way is refused as Damaged and stored nowhere,
// held or streamed; a body cut short is invalid; a client that went
// away is Aborted.
func TestEnvelopeVerified(t *testing.T) {
	for _, limit := range []int64{64 << 20, 1 << 10} {
		f := newFixture(t, limit)
		key, body := f.segment("000000010000000000000002")
		bad := bytes.Clone(body)
		bad[len(bad)/2] ^= 0x55
		var dm *Damaged
		if _, err := f.put(key, bad); !errors.As(err, &dm) || f.stored(key) {
			t.Errorf("limit %d: damaged body: %v", limit, err)
		}
		var ab *Aborted
		cut := io.MultiReader(bytes.NewReader(body[:len(body)/2]), errReader{&Aborted{errors.New("connection reset")}})
		if _, err := f.door.Put(context.Background(), key, int64(len(body)), cut); !errors.As(err, &ab) || f.stored(key) {
			t.Errorf("limit %d: aborted body: %v", limit, err)
		}
		if _, err := f.put(key, body); err != nil {
			t.Errorf("limit %d: the honest retry: %v", limit, err)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
