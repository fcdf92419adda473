package failover_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/failover"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/storetest"
)

var errDown = errors.New("connection refused")

// down is an endpoint that cannot be reached.
type down struct{ calls atomic.Int64 }

func (d *down) Put(context.Context, string, store.Body) error { d.calls.Add(1); return errDown }
func (d *down) Get(context.Context, string) (io.ReadCloser, error) {
	d.calls.Add(1)
	return nil, errDown
}
func (d *down) Stat(context.Context, string) (store.Info, error) {
	d.calls.Add(1)
	return store.Info{}, errDown
}
func (d *down) List(context.Context, string, func(store.Info) error) error {
	d.calls.Add(1)
	return errDown
}
func (d *down) Delete(context.Context, string) error { d.calls.Add(1); return errDown }

func isDown(err error) bool { return errors.Is(err, errDown) }

// The wrapper is a store like any other, its first endpoint dead.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := failover.New([]store.Store{&down{}, memstore.New()}, 0, isDown)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{Short: true})
}

// A dead endpoint costs one attempt: the next answer is remembered, and
// told; an endpoint that answers "no" is not skipped; when none answers,
// the error is still "unreachable".
func TestFailover(t *testing.T) {
	ctx := context.Background()
	d, m := &down{}, memstore.New()
	s, _ := failover.New([]store.Store{d, m}, 0, isDown)
	switched := -1
	s.OnSwitch = func(i int) { switched = i }
	if err := s.Put(ctx, "a/k", store.Bytes([]byte("v"))); err != nil {
		t.Fatal(err)
	}
	if switched != 1 || s.Current() != 1 {
		t.Fatalf("switched to %d, current %d", switched, s.Current())
	}
	for range 5 {
		rc, err := s.Get(ctx, "a/k")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(b, []byte("v")) {
			t.Fatal("wrong content")
		}
	}
	if n := d.calls.Load(); n != 1 {
		t.Fatalf("the dead endpoint was tried %d times, want once", n)
	}
	if _, err := s.Stat(ctx, "a/missing"); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("a 'not found' from a live endpoint: %v", err)
	}
	if n := d.calls.Load(); n != 1 {
		t.Fatal("a 'not found' made the wrapper try the dead endpoint")
	}
	all, _ := failover.New([]store.Store{&down{}, &down{}}, 1, isDown)
	if _, err := all.Get(ctx, "a/k"); !isDown(err) {
		t.Fatalf("nothing answers: %v", err)
	}
}
