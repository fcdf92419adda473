package door

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/wal/waltest"
)

const segSize = 1 << 20

// fixture is a door over a memory store, with BufferLimit bytes held
// whole (larger bodies stream).
type fixture struct {
	t     *testing.T
	store *memstore.Store
	door  *Door
}

func newFixture(t *testing.T, bufferLimit int64) fixture {
	ms := memstore.New()
	return fixture{t, ms, New(Config{Store: ms, MemoryLimit: 256 << 20, BufferLimit: bufferLimit})}
}

// envelope encodes raw as the object under key, of system sys.
func (f fixture) envelope(key string, sys uint64, raw []byte) []byte {
	f.t.Helper()
	a, _ := archive.New(f.store, "main")
	enc := a.Encoder()
	enc.SystemID = sys
	obj, err := enc.EncodeBytes(raw, key)
	if err != nil {
		f.t.Fatal(err)
	}
	return obj.Bytes()
}

// segment is the envelope of a WAL segment of system 7.
func (f fixture) segment(name string) (string, []byte) {
	n := waltest.Name(name)
	key := archive.Layout{Archive: "main"}.WAL(n)
	return key, f.envelope(key, 7, waltest.Segment(7, n, segSize))
}

func (f fixture) put(key string, body []byte) (Result, error) {
	return f.door.Put(context.Background(), key, int64(len(body)), bytes.NewReader(body))
}

// stored reports whether key is in the store.
func (f fixture) stored(key string) bool {
	_, err := f.store.Stat(context.Background(), key)
	return err == nil
}

// A segment passes every check, in memory and streamed.
func TestPutStoresWhatPasses(t *testing.T) {
	for _, limit := range []int64{64 << 20, 1 << 10} {
		f := newFixture(t, limit)
		key, body := f.segment("000000010000000000000002")
		res, err := f.put(key, body)
		if err != nil || res.Outcome != archive.Stored || !f.stored(key) || res.K.Kind != archive.KindWAL {
			t.Fatalf("buffer limit %d: %+v %v", limit, res, err)
		}
		if f.door.MemoryInUse() != 0 {
			t.Fatalf("buffer limit %d: %d bytes of budget still taken", limit, f.door.MemoryInUse())
		}
	}
}

// PutObject (walstored's own receiver) runs the same checks.
func TestPutObjectRunsTheChecks(t *testing.T) {
	f := newFixture(t, 64<<20)
	a, _ := archive.New(f.store, "main")
	enc := a.Encoder()
	enc.SystemID = 7
	n := waltest.Name("000000010000000000000002")
	obj, _ := enc.EncodeBytes(waltest.Segment(7, n, segSize), a.Layout.WAL(n))
	if res, err := f.door.PutObject(context.Background(), a.Layout.WAL(n), obj); err != nil || res.Outcome != archive.Stored {
		t.Fatalf("%+v %v", res, err)
	}
	other := waltest.Name("000000010000000000000003")
	enc.SystemID = 8
	obj, _ = enc.EncodeBytes(waltest.Segment(8, other, segSize), a.Layout.WAL(other))
	if _, err := f.door.PutObject(context.Background(), a.Layout.WAL(other), obj); !errors.Is(err, errkind.ErrWrongSystem) {
		t.Fatalf("another system's segment: %v", err)
	}
}
