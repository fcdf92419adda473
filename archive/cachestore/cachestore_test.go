package cachestore_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/cachestore"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/archive/storetest"
)

// The cache is invisible: the wrapped store passes the whole suite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		fs, err := filestore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return cachestore.New(fs, cachestore.Options{MaxBytes: 8 << 20, MaxObject: 2 << 20})
	}, storetest.Options{})
}

// countingStore counts reads of the store behind the cache.
type countingStore struct {
	archive.Store
	gets atomic.Int64
	gate chan struct{}
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.gets.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	return c.Store.Get(ctx, key)
}

// Sixteen concurrent readers of one object cost one read of the store; a
// later reader is served from memory.
func TestConcurrentReadsCoalesce(t *testing.T) {
	fs, _ := filestore.Open(t.TempDir())
	obj := storetest.Object(t, 1<<20)
	ctx := context.Background()
	if err := fs.Put(ctx, "a/wal/000000010000000000000001", obj.Reader(), obj.Size()); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: fs, gate: make(chan struct{})}
	c := cachestore.New(cs, cachestore.Options{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			rc, err := c.Get(ctx, "a/wal/000000010000000000000001")
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			if int64(len(b)) != obj.Size() {
				t.Errorf("read %d bytes", len(b))
			}
		})
	}
	for cs.gets.Load() == 0 {
	}
	close(cs.gate)
	wg.Wait()
	rc, _ := c.Get(ctx, "a/wal/000000010000000000000001")
	rc.Close()
	if n := cs.gets.Load(); n != 1 {
		t.Fatalf("16 concurrent readers and one later reader cost %d store reads, want 1", n)
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses+st.Coalesced != 16 {
		t.Fatalf("stats %+v", st)
	}
}

// A pushed object is in the cache: reading it back costs no store read.
func TestPutPopulatesAndDeleteEvicts(t *testing.T) {
	fs, _ := filestore.Open(t.TempDir())
	cs := &countingStore{Store: fs}
	c := cachestore.New(cs, cachestore.Options{})
	obj := storetest.Object(t, 1000)
	ctx := context.Background()
	key := "a/wal/000000010000000000000002"
	if err := c.Put(ctx, key, obj.Reader(), obj.Size()); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if cs.gets.Load() != 0 {
		t.Fatal("a just-pushed object was read from the store")
	}
	if err := c.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, key); err == nil {
		t.Fatal("deleted object still served from the cache")
	}
}
