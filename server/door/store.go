package door

import (
	"bytes"
	"context"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/store"
)

// store puts a verified body held in buf with the one idempotency rule
// (archive.PutEnvelope). kept is the pool buffer buf came from, if any;
// cached says it is a WAL body the cache may hold (store.Shared) and
// gives back to its pool when it evicts it.
func (d *Door) store(ctx context.Context, res Result, buf []byte, kept *[]byte, cached bool) (Result, error) {
	sb := store.Bytes(buf)
	var shared *store.Shared
	switch {
	case cached:
		shared = store.NewShared(buf, recycleWALBody)
		sb = store.SharedBytes(shared) // the cache holds it while it keeps it
	case kept != nil:
		sb = store.Section(bytes.NewReader(buf), int64(len(buf))) // no Bytes method: the cache keeps nothing
	}
	var err error
	res.Outcome, err = archive.PutEnvelope(ctx, d.cfg.Store, res.Key, res.Header, sb)
	// Every store took the whole body. After an error, or a name found
	// taken, a store's request may still be reading it: the buffer is left
	// to the garbage collector.
	switch {
	case err != nil || !res.Outcome.BodyDone():
	case cached:
		shared.Release()
	case kept != nil:
		*kept = buf[:0]
		packBodies.Put(kept)
	}
	return res, err
}
