package door

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/walstore/walstore/archive/envelope"
)

func TestLimits(t *testing.T) {
	f := newFixture(t, 64<<20)
	key, body := f.segment("000000010000000000000002")
	ctx := context.Background()
	if _, err := f.door.Put(ctx, key, -1, bytes.NewReader(body)); !errors.Is(err, ErrNoLength) {
		t.Errorf("no length: %v", err)
	}
	if _, err := f.door.Put(ctx, key, envelope.MaxObjectSize+1, bytes.NewReader(body)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	// A budget smaller than the body: told to retry, nothing taken.
	small := New(Config{Store: f.store, MemoryLimit: 1 << 10, BufferLimit: 64 << 20})
	if _, err := small.Put(ctx, key, int64(len(body)), bytes.NewReader(body)); !errors.Is(err, ErrBusy) || small.MemoryInUse() != 0 || f.stored(key) {
		t.Errorf("over the budget: %v, %d bytes held", err, small.MemoryInUse())
	}
	// Streamed: the decoder's window is reserved from the budget too.
	stream := New(Config{Store: f.store, MemoryLimit: 1 << 10, BufferLimit: 0})
	if _, err := stream.Put(ctx, key, int64(len(body)), bytes.NewReader(body)); !errors.Is(err, ErrBusy) {
		t.Errorf("streamed over the budget: %v", err)
	}
}
