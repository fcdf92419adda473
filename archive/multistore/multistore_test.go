package multistore_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/archive/multistore"
	"github.com/walstore/walstore/archive/storetest"
)

func two(t *testing.T, quorum int) (*multistore.Store, *filestore.Store, *flaky, string, string) {
	d1, d2 := t.TempDir(), t.TempDir()
	a, _ := filestore.Open(d1)
	b, _ := filestore.Open(d2)
	fb := &flaky{Store: b}
	m, err := multistore.New([]multistore.Member{{Name: "a", Store: a}, {Name: "b", Store: fb}}, multistore.Options{Quorum: quorum})
	if err != nil {
		t.Fatal(err)
	}
	return m, a, fb, d1, d2
}

// flaky can be switched off like a store that went down.
type flaky struct {
	archive.Store
	down atomic.Bool
}

var errDown = errors.New("connection refused")

func (f *flaky) Put(ctx context.Context, k string, r io.Reader, n int64) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Put(ctx, k, r, n)
}

func (f *flaky) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.Get(ctx, k)
}

func (f *flaky) List(ctx context.Context, p string, fn func(archive.Info) error) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.List(ctx, p, fn)
}

// Two stores kept in step pass the same suite as one.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		m, _, _, _, _ := two(t, 0)
		return m
	}, storetest.Options{ListObjects: 300, LargeObject: 8 << 20})
}

func TestStoreDownPolicies(t *testing.T) {
	ctx := context.Background()
	obj := storetest.Object(t, 5000)
	// Default: every store must have it.
	m, _, fb, _, _ := two(t, 0)
	fb.down.Store(true)
	if _, err := archive.PutObject(ctx, m, "x/backups/a/1", obj); err == nil || archive.Permanent(err) {
		t.Fatalf("default policy with a store down: %v, want a transient failure", err)
	}
	fb.down.Store(false)
	if out, err := archive.PutObject(ctx, m, "x/backups/a/1", obj); err != nil || out != archive.Stored {
		t.Fatalf("retry once the store is back: %v %v", out, err)
	}

	// Quorum 1: accepted, owed, repaired by Sync.
	m, _, fb, _, _ = two(t, 1)
	fb.down.Store(true)
	if out, err := archive.PutObject(ctx, m, "x/backups/a/2", obj); err != nil || out != archive.Stored {
		t.Fatalf("quorum 1 with a store down: %v %v", out, err)
	}
	if h := m.Health(); h[1].Up || h[1].Owed != 1 {
		t.Fatalf("health: %+v", h)
	}
	fb.down.Store(false)
	rep, err := m.Sync(ctx, "x/")
	if err != nil || rep.Copied["b"] != 1 || len(rep.Conflicts) != 0 {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	if _, err := fb.Stat(ctx, "x/backups/a/2"); err != nil {
		t.Fatalf("not repaired: %v", err)
	}
	if h := m.Health(); h[1].Owed != 0 {
		t.Fatalf("still owed after sync: %+v", h)
	}
}

// A corrupt copy in the first store is served from the second and
// reported; a conflict between stores is reported by Sync, not resolved.
func TestCorruptCopyAndConflict(t *testing.T) {
	ctx := context.Background()
	var reported atomic.Int32
	d1, d2 := t.TempDir(), t.TempDir()
	a, _ := filestore.Open(d1)
	b, _ := filestore.Open(d2)
	m, _ := multistore.New([]multistore.Member{{Name: "a", Store: a}, {Name: "b", Store: b}},
		multistore.Options{OnCorrupt: func(string, string, error) { reported.Add(1) }})
	obj := storetest.Object(t, 50000)
	if _, err := archive.PutObject(ctx, m, "x/backups/a/1", obj); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d1, "x/backups/a/1")
	data, _ := os.ReadFile(p)
	data[len(data)-10] ^= 0xFF
	os.WriteFile(p, data, 0o640)
	_, rc, err := archive.GetObject(ctx, m, "x/backups/a/1")
	if err != nil {
		t.Fatalf("get with one corrupt copy: %v", err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("served a corrupt copy: %v", err)
	}
	if reported.Load() != 1 {
		t.Fatal("the corrupt copy was not reported")
	}
	other := storetest.Object(t, 40000)
	a.Put(ctx, "x/backups/a/2", other.Reader(), other.Size())
	b.Put(ctx, "x/backups/a/2", obj.Reader(), obj.Size())
	rep, err := m.Sync(ctx, "x/")
	if err != nil || len(rep.Conflicts) != 1 {
		t.Fatalf("conflict not reported: %+v %v", rep, err)
	}
	if _, err := archive.PutObject(ctx, m, "x/backups/a/2", obj); !errors.Is(err, archive.ErrConflict) {
		t.Fatalf("put over a split store: %v, want a conflict", err)
	}
}
