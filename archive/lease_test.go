package archive_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
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
