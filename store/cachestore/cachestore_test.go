package cachestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/cachestore"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/storetest"
)

// The cache is invisible: the wrapped store passes the whole checker.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return cachestore.New(memstore.New(), cachestore.Options{MaxBytes: 8 << 20, MaxObject: 2 << 20})
	}, storetest.Options{Short: true})
}

// countingStore counts reads of the store behind the cache and can hold
// them until released.
type countingStore struct {
	store.Store
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
	ms := memstore.New()
	b := storetest.Random(1 << 20)
	ctx := context.Background()
	if err := ms.Put(ctx, "a/1", store.Bytes(b)); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: ms, gate: make(chan struct{})}
	c := cachestore.New(cs, cachestore.Options{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			rc, err := c.Get(ctx, "a/1")
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			got, _ := io.ReadAll(rc)
			if len(got) != len(b) {
				t.Errorf("read %d bytes", len(got))
			}
		})
	}
	for cs.gets.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others join the flight
	close(cs.gate)
	wg.Wait()
	rc, _ := c.Get(ctx, "a/1")
	rc.Close()
	if n := cs.gets.Load(); n != 1 {
		t.Fatalf("16 concurrent readers and one later reader cost %d store reads, want 1", n)
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses+st.Coalesced != 16 {
		t.Fatalf("stats %+v", st)
	}
}

// A reader waiting on a shared read gives up when its own context ends.
func TestWaitingReaderHonoursItsContext(t *testing.T) {
	ms := memstore.New()
	ms.Put(context.Background(), "a/1", store.Bytes([]byte("x")))
	cs := &countingStore{Store: ms, gate: make(chan struct{})}
	defer close(cs.gate)
	c := cachestore.New(cs, cachestore.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "a/1")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("get with a 100ms deadline: %v after %v", err, time.Since(start))
	}
}

// A pushed object is in the cache: reading it back costs no store read.
func TestPutPopulatesAndDeleteEvicts(t *testing.T) {
	cs := &countingStore{Store: memstore.New()}
	c := cachestore.New(cs, cachestore.Options{})
	ctx := context.Background()
	if err := c.Put(ctx, "a/2", store.Bytes(storetest.Random(1000))); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Get(ctx, "a/2")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if cs.gets.Load() != 0 {
		t.Fatal("a just-pushed object was read from the store")
	}
	if err := c.Delete(ctx, "a/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "a/2"); err == nil {
		t.Fatal("deleted object still served from the cache")
	}
}

// Objects the cache does not admit (backup packs, in walstored) pass
// through, written or read, and never push out the objects it does keep.
func TestObjectsNotAdmittedPassThrough(t *testing.T) {
	cs := &countingStore{Store: memstore.New()}
	c := cachestore.New(cs, cachestore.Options{MaxBytes: 4 << 20, Admit: func(key string) bool { return key[0] == 'w' }})
	ctx := context.Background()
	seg := storetest.Random(3 << 20)
	if err := c.Put(ctx, "wal/1", store.Bytes(seg)); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		key := fmt.Sprintf("pack/%d", i)
		if err := c.Put(ctx, key, store.Bytes(storetest.Random(2<<20))); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			rc, err := c.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
	}
	if n := cs.gets.Load(); n != 8 {
		t.Errorf("%d reads of the store for 8 reads of objects not admitted: want each read to pass through", n)
	}
	if st := c.Stats(); st.Bytes != int64(len(seg)) || st.Evictions != 0 {
		t.Errorf("cache holds %d bytes after %d evictions, want only the admitted %d and none evicted", st.Bytes, st.Evictions, len(seg))
	}
	rc, err := c.Get(ctx, "wal/1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, seg) || cs.gets.Load() != 8 {
		t.Error("the admitted object was not served from the cache after the others passed through")
	}
}

// An object deleted behind the cache (through another walstored sharing
// the store) is not served once its entry is older than Revalidate.
func TestDeletedBehindTheCache(t *testing.T) {
	ctx := context.Background()
	inner := memstore.New()
	c := cachestore.New(inner, cachestore.Options{Revalidate: 20 * time.Millisecond})
	if err := c.Put(ctx, "a/k", store.Bytes([]byte("v"))); err != nil {
		t.Fatal(err)
	}
	if err := inner.Delete(ctx, "a/k"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(40 * time.Millisecond)
	if _, err := c.Get(ctx, "a/k"); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("a deleted object served from the cache: %v", err)
	}
	if c.Stats().Bytes != 0 {
		t.Fatal("the entry was kept")
	}
}

// Shared memory is given back once: not while the cache keeps it, not
// while a reader of it is open (even after an eviction), and then
// exactly once; what a reader reads is the object.
func TestSharedMemoryHeldWhileCachedAndRead(t *testing.T) {
	ctx := context.Background()
	c := cachestore.New(memstore.New(), cachestore.Options{MaxBytes: 4 << 20, MaxObject: 2 << 20})
	var freed atomic.Int64
	buf := make([]byte, 100, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	sh := store.NewShared(buf, func([]byte) { freed.Add(1) })
	if err := c.Put(ctx, "a/k", store.SharedBytes(sh)); err != nil {
		t.Fatal(err)
	}
	sh.Release() // the maker's hold
	if freed.Load() != 0 {
		t.Fatal("given back while cached")
	}
	rc, err := c.Get(ctx, "a/k")
	if err != nil {
		t.Fatal(err)
	}
	part, err := store.GetRange(ctx, c, "a/k", 10, 5)
	if err != nil {
		t.Fatal(err)
	}
	c.Evict("a/k")
	if freed.Load() != 0 {
		t.Fatal("given back while two readers are open")
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	rc.Close() // a second Close gives nothing back again
	p, _ := io.ReadAll(part)
	if len(got) != 100 || got[99] != 99 || len(p) != 5 || p[0] != 10 {
		t.Fatalf("read %d bytes (last %d), part %v", len(got), got[len(got)-1], p)
	}
	if freed.Load() != 0 {
		t.Fatal("given back while the ranged reader is open")
	}
	part.Close()
	if n := freed.Load(); n != 1 {
		t.Fatalf("given back %d times, want once", n)
	}
	// Evicted by newer objects (the cache counts whole buffers): given
	// back without any reader.
	for i := range 6 {
		sh := store.NewShared(make([]byte, 10, 1<<20), func([]byte) { freed.Add(1) })
		if err := c.Put(ctx, "a/n"+string(rune('0'+i)), store.SharedBytes(sh)); err != nil {
			t.Fatal(err)
		}
		sh.Release()
	}
	if n := freed.Load(); n != 1+2 {
		t.Fatalf("after 6 objects of 1 MiB buffers in a 4 MiB cache: %d given back, want 3", n)
	}
}

// Readers racing evictions never see another object's bytes: buffers go
// back for reuse only when no reader holds them (pushed objects in shared
// memory and objects read on a miss alike), in a cache that holds two.
func TestRecycledBuffersNeverServeOtherBytes(t *testing.T) {
	ctx := context.Background()
	inner := memstore.New()
	c := cachestore.New(inner, cachestore.Options{MaxBytes: 40 << 20, MaxObject: 32 << 20, Revalidate: time.Hour})
	want := map[string][]byte{}
	for i := range 12 {
		key := fmt.Sprintf("a/o%02d", i)
		b := bytes.Repeat([]byte{byte(i + 1)}, 200<<10+i)
		want[key] = b
		if i%2 == 0 { // half pushed through the cache in shared memory
			buf := make([]byte, len(b), 17<<20)
			copy(buf, b)
			sh := store.NewShared(buf, func([]byte) {})
			if err := c.Put(ctx, key, store.SharedBytes(sh)); err != nil {
				t.Fatal(err)
			}
			sh.Release()
		} else if err := inner.Put(ctx, key, store.Bytes(b)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 60 {
				key := fmt.Sprintf("a/o%02d", (g*7+i*5)%12)
				rc, err := c.Get(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(got, want[key]) {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d reads returned other bytes than the object's", n)
	}
}
