package retrystore_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/retrystore"
	"github.com/walstore/walstore/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return retrystore.New(memstore.New(), retrystore.Options{})
	}, storetest.Options{Short: true})
}

// failing answers 503-like errors for the first n calls of each kind.
type failing struct {
	store.Store
	puts, gets atomic.Int32
	n          int32
}

var errBusy = errors.New("503 service unavailable")

func (f *failing) Put(ctx context.Context, k string, b store.Body) error {
	if f.puts.Add(1) <= f.n {
		io.CopyN(io.Discard, b, 10) // a failure half-way through the body
		return errBusy
	}
	return f.Store.Put(ctx, k, b)
}

func (f *failing) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	if f.gets.Add(1) <= f.n {
		return nil, errBusy
	}
	return f.Store.Get(ctx, k)
}

// Passing failures are retried, the body sent again whole; a body that
// can be read only once is not sent twice; permanent answers are not
// retried; the context bounds it all.
func TestRetries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &failing{Store: memstore.New(), n: 2}
	s := retrystore.New(f, retrystore.Options{Backoff: store.Backoff{Initial: time.Millisecond}})
	b := storetest.Random(1000)
	if err := s.Put(ctx, "a/1", store.Bytes(b)); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "a/1")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	if string(got) != string(b) || f.puts.Load() != 3 || f.gets.Load() != 3 {
		t.Fatalf("after retries: %d bytes, %d puts, %d gets", len(got), f.puts.Load(), f.gets.Load())
	}
	f2 := &failing{Store: memstore.New(), n: 1}
	s2 := retrystore.New(f2, retrystore.Options{Backoff: store.Backoff{Initial: time.Millisecond}})
	if err := s2.Put(ctx, "a/1", store.Stream(io.LimitReader(zeros{}, 100), 100)); err == nil || f2.puts.Load() != 1 {
		t.Fatalf("a stream was sent again: %v after %d puts", err, f2.puts.Load())
	}
	if err := s.Put(ctx, "a/1", store.Bytes(b)); !errors.Is(err, errkind.ErrExists) {
		t.Fatalf("exists: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	f3 := &failing{Store: memstore.New(), n: 1 << 30}
	if _, err := retrystore.New(f3, retrystore.Options{}).Get(short, "a/1"); err == nil {
		t.Fatal("a store that always fails was answered")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { return len(p), nil }
