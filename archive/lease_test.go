package archive_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
)

// A lease is held by one run at a time, names its holder to the others,
// is taken over once expired, and is released only by its holder.
func TestLease(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	key := archive.Layout{Archive: "main"}.Lease("retain")
	l1, err := archive.TakeLease(ctx, s, key, "retention of archive main", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = archive.TakeLease(ctx, s, key, "retention of archive main", time.Hour)
	if !errors.Is(err, archive.ErrBusy) || !strings.Contains(err.Error(), l1.Holder) {
		t.Fatalf("a second run: %v", err)
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := archive.TakeLease(ctx, s, key, "retention of archive main", time.Millisecond)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	time.Sleep(5 * time.Millisecond)
	l3, err := archive.TakeLease(ctx, s, key, "retention of archive main", time.Hour)
	if err != nil {
		t.Fatalf("an expired lease was not taken over: %v", err)
	}
	if err := l2.Release(ctx); err != nil { // no longer its: a no-op
		t.Fatal(err)
	}
	if _, err := archive.TakeLease(ctx, s, key, "retention of archive main", time.Hour); !errors.Is(err, archive.ErrBusy) {
		t.Fatalf("the expired holder's release removed the new holder's lease: %v", err)
	}
	l3.Release(ctx)
	if k, err := archive.ParseKey(key); err != nil || k.Kind != archive.KindLease {
		t.Fatalf("ParseKey(%s) = %v, %v", key, k, err)
	}
}

// unreachable is a store that does not answer.
type unreachable struct{ store.Store }

func (unreachable) Put(context.Context, string, store.Body) error {
	return errors.New("dial tcp: connection refused")
}

// A repository-wide lease over several stores is taken in the first that
// answers: a run that finds it taken there is told so, and a run that
// finds the first store down takes it in the next.
func TestLeaseInFirstStoreThatAnswers(t *testing.T) {
	ctx := context.Background()
	a, b := memstore.New(), memstore.New()
	l, err := archive.TakeLeaseInFirst(ctx, []store.Store{a, b}, archive.SyncLeaseKey, "store sync", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, archive.SyncLeaseKey); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("the lease was taken in the second store too: %v", err)
	}
	if _, err := archive.TakeLeaseInFirst(ctx, []store.Store{a, b}, archive.SyncLeaseKey, "store sync", time.Hour); !errors.Is(err, archive.ErrBusy) {
		t.Fatalf("a second sync: %v", err)
	}
	l.Release(ctx)
	l, err = archive.TakeLeaseInFirst(ctx, []store.Store{unreachable{a}, b}, archive.SyncLeaseKey, "store sync", time.Hour)
	if err != nil {
		t.Fatalf("with the first store down: %v", err)
	}
	if _, err := b.Stat(ctx, archive.SyncLeaseKey); err != nil {
		t.Fatalf("with the first store down, the lease is not in the second: %v", err)
	}
	l.Release(ctx)
	if _, err := archive.TakeLeaseInFirst(ctx, []store.Store{unreachable{a}, unreachable{b}}, archive.SyncLeaseKey, "store sync", time.Hour); err == nil || errors.Is(err, archive.ErrBusy) {
		t.Fatalf("no store answers: %v", err)
	}
	if !archive.StoreLocal(archive.SyncLeaseKey) || !archive.StoreLocal(archive.ProbeKey()) || archive.StoreLocal(archive.Layout{Archive: "main"}.Lease("retain")) {
		t.Fatal("StoreLocal: the sync lease and probes are local to a store, an archive's lease is not")
	}
}

// A lease whose holder died on this host is taken over at once; one held
// by a live process is not.
func TestLeaseOfADeadHolderOnThisHost(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	key := archive.Layout{Archive: "main"}.Lease("retain")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	dead := fmt.Sprintf(`{"job":"retention of archive main","holder":"%s pid %d","acquired":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z"}`, host, cmd.Process.Pid)
	obj, _ := envelope.NewEncoder().EncodeBytes([]byte(dead), key)
	s.Put(ctx, key, store.Bytes(obj.Bytes()))
	l, err := archive.TakeLease(ctx, s, key, "retention of archive main", time.Hour)
	if err != nil {
		t.Fatalf("the lease of a process that is gone: %v", err)
	}
	if _, err := archive.TakeLease(ctx, s, key, "retention of archive main", time.Hour); !errors.Is(err, archive.ErrBusy) {
		t.Fatalf("the lease of a live process was taken: %v", err)
	}
	l.Release(ctx)
}
