package retrystore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// damaging serves a damaged copy of every object for its first bad
// reads, then the good one.
type damaging struct {
	store.Store
	bad   int
	reads int
}

func (d *damaging) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := d.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if d.reads++; d.reads <= d.bad {
		b[0] ^= 0xff
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Load runs the consumer inside the retries: a read that does not verify
// is read once more (and then passes, or is reported), never more, and a
// caller writes no loop of its own.
func TestLoadRetriesACorruptReadOnce(t *testing.T) {
	ctx := context.Background()
	verify := func(r io.Reader) error {
		b, _ := io.ReadAll(r)
		if b[0] != 'g' {
			return fmt.Errorf("%w: damaged", errkind.ErrCorrupt)
		}
		return nil
	}
	for _, tc := range []struct {
		bad, reads int
		ok         bool
	}{{0, 1, true}, {1, 2, true}, {5, 2, false}} {
		inner := &damaging{Store: memstore.New(), bad: tc.bad}
		inner.Put(ctx, "k", store.Bytes([]byte("good")))
		s := retrystore.New(inner, retrystore.Options{Backoff: store.Backoff{Initial: time.Millisecond}})
		err := store.Load(ctx, s, "k", verify)
		if (err == nil) != tc.ok || inner.reads != tc.reads || !tc.ok && !errors.Is(err, errkind.ErrCorrupt) {
			t.Errorf("%d damaged reads: Load = %v after %d reads, want ok=%v after %d", tc.bad, err, inner.reads, tc.ok, tc.reads)
		}
	}
	// Without a retrying store, one read.
	inner := &damaging{Store: memstore.New(), bad: 1}
	inner.Put(ctx, "k", store.Bytes([]byte("good")))
	if err := store.Load(ctx, inner, "k", verify); !errors.Is(err, errkind.ErrCorrupt) || inner.reads != 1 {
		t.Errorf("plain store: %v after %d reads", err, inner.reads)
	}
}
