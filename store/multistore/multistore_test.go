package multistore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/multistore"
	"github.com/walstore/walstore/store/storetest"
)

// flaky can be switched off like a store that went down.
type flaky struct {
	store.Store
	down atomic.Bool
}

var errDown = errors.New("connection refused")

func (f *flaky) Unwrap() store.Store { return f.Store }

func (f *flaky) Put(ctx context.Context, k string, b store.Body) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Put(ctx, k, b)
}

func (f *flaky) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.Get(ctx, k)
}

func (f *flaky) List(ctx context.Context, p string, fn func(store.Info) error) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.List(ctx, p, fn)
}

// verify treats a copy whose bytes contain "BAD" as corrupt.
func verify(_ string, r io.Reader) error {
	b, _ := io.ReadAll(r)
	if bytes.Contains(b, []byte("BAD-COPY")) {
		return errkind.ErrCorrupt
	}
	return nil
}

func two(t *testing.T, quorum int) (*multistore.Store, *memstore.Store, *flaky) {
	a := memstore.New()
	fb := &flaky{Store: memstore.New()}
	m, err := multistore.New([]multistore.Member{{Name: "a", Store: a}, {Name: "b", Store: fb}}, multistore.Options{Quorum: quorum, Verify: verify})
	if err != nil {
		t.Fatal(err)
	}
	return m, a, fb
}

// Two stores kept in step pass the same checker as one.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		m, _, _ := two(t, 0)
		return m
	}, storetest.Options{ListObjects: 300, LargeObject: 8 << 20})
}

func TestStoreDownPolicies(t *testing.T) {
	ctx := context.Background()
	b := storetest.Random(5000)
	// Default: every store must have it.
	m, _, fb := two(t, 0)
	fb.down.Store(true)
	if err := m.Put(ctx, "x/1", store.Bytes(b)); err == nil || errkind.Permanent(err) {
		t.Fatalf("default policy with a store down: %v, want a transient failure", err)
	}
	fb.down.Store(false)
	if err := m.Put(ctx, "x/1", store.Bytes(b)); err != nil && !errors.Is(err, errkind.ErrExists) {
		t.Fatalf("retry once the store is back: %v", err)
	}
	// Quorum 1: accepted, owed, repaired by Sync.
	m, _, fb = two(t, 1)
	fb.down.Store(true)
	if err := m.Put(ctx, "x/2", store.Bytes(b)); err != nil {
		t.Fatalf("quorum 1 with a store down: %v", err)
	}
	if h := m.Health(); h[1].Up || h[1].Owed != 1 {
		t.Fatalf("health: %+v", h)
	}
	fb.down.Store(false)
	rep, err := m.Sync(ctx, "x/")
	if err != nil || rep.Copied["b"] != 1 || len(rep.Conflicts) != 0 {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	if _, err := fb.Stat(ctx, "x/2"); err != nil {
		t.Fatalf("not repaired: %v", err)
	}
	if h := m.Health(); h[1].Owed != 0 {
		t.Fatalf("still owed after sync: %+v", h)
	}
}

// A streamed body (too large to hold) reaches every store, and a store
// that fails mid-way does not hold the others back.
func TestStreamedPutReachesEveryStore(t *testing.T) {
	ctx := context.Background()
	m, a, fb := two(t, 0)
	b := storetest.Random(3 << 20)
	if err := m.Put(ctx, "x/big", store.Stream(bytes.NewReader(b), int64(len(b)))); err != nil {
		t.Fatal(err)
	}
	for _, s := range []store.Store{a, fb} {
		rc, err := s.Get(ctx, "x/big")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		if !bytes.Equal(got, b) {
			t.Fatal("a store holds other bytes")
		}
	}
	m1, _, fb1 := two(t, 1)
	fb1.down.Store(true)
	if err := m1.Put(ctx, "x/big", store.Stream(bytes.NewReader(b), int64(len(b)))); err != nil {
		t.Fatalf("streamed put, quorum 1, one store down: %v", err)
	}
}

// A corrupt copy in the first store is served from the second and
// reported; a conflict between stores is reported by Sync, not resolved,
// and two identical copies are never a conflict.
func TestCorruptCopyAndConflict(t *testing.T) {
	ctx := context.Background()
	var reported atomic.Int32
	a, b := memstore.New(), memstore.New()
	m, _ := multistore.New([]multistore.Member{{Name: "a", Store: a}, {Name: "b", Store: b}},
		multistore.Options{Verify: verify, OnCorrupt: func(string, string, error) { reported.Add(1) }})
	good := []byte(strings.Repeat("good ", 1000))
	if err := m.Put(ctx, "x/1", store.Bytes(good)); err != nil {
		t.Fatal(err)
	}
	a.Delete(ctx, "x/1")
	a.Put(ctx, "x/1", store.Bytes([]byte("BAD-COPY of x/1")))
	rc, err := m.Get(ctx, "x/1")
	if err != nil {
		t.Fatalf("get with one corrupt copy: %v", err)
	}
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, good) {
		t.Fatal("served the corrupt copy")
	}
	if reported.Load() != 1 {
		t.Fatal("the corrupt copy was not reported")
	}
	a.Put(ctx, "x/2", store.Bytes([]byte("one content")))
	b.Put(ctx, "x/2", store.Bytes([]byte("another content")))
	rep, err := m.Sync(ctx, "x/")
	if err != nil || len(rep.Conflicts) != 1 || rep.Conflicts[0].Key != "x/2" || len(rep.Corrupt) != 1 {
		t.Fatalf("conflict not reported: %+v %v", rep, err)
	}
	if err := m.Put(ctx, "x/2", store.Bytes([]byte("another content"))); !errors.Is(err, errkind.ErrExists) {
		t.Fatalf("put over a split store: %v, want ErrExists", err)
	}
}

// Sync leaves the keys Options.Local claims where they are (a lease held
// in one store must not appear in another).
func TestSyncLeavesLocalKeys(t *testing.T) {
	ctx := context.Background()
	a, b := memstore.New(), memstore.New()
	m, err := multistore.New([]multistore.Member{{Name: "a", Store: a}, {Name: "b", Store: b}},
		multistore.Options{Local: func(k string) bool { return strings.HasPrefix(k, "local/") }})
	if err != nil {
		t.Fatal(err)
	}
	a.Put(ctx, "local/lease", store.Bytes([]byte("held in a")))
	a.Put(ctx, "shared/x", store.Bytes([]byte("copied")))
	rep, err := m.Sync(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "local/lease"); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("a local key was copied: %v (report %+v)", err, rep)
	}
	if _, err := b.Stat(ctx, "shared/x"); err != nil {
		t.Fatalf("a shared key was not copied: %v", err)
	}
}
