package archive_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
)

// Retention records: the newest is found, only the newest few are kept,
// and their keys parse as retention records.
func TestRetentionRuns(t *testing.T) {
	ctx := context.Background()
	a, err := archive.New(memstore.New(), "main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.LastRetentionRun(ctx); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("before any run: %v", err)
	}
	start := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	for i := range archive.KeepRetentionRuns + 3 {
		at := start.Add(time.Duration(i) * 24 * time.Hour)
		r := archive.RetentionRun{ID: fmt.Sprintf("%s-%09d", archive.NewBackupID(at), 0), Archive: "main", RanAt: at, KeepLast: i + 1}
		if err := a.PutRetentionRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	last, err := a.LastRetentionRun(ctx)
	if err != nil || last.KeepLast != archive.KeepRetentionRuns+3 {
		t.Fatalf("newest record: %+v, %v", last, err)
	}
	n := 0
	a.Store.List(ctx, a.Layout.RetentionPrefix(), func(i store.Info) error {
		n++
		if k, err := archive.ParseKey(i.Key); err != nil || k.Kind != archive.KindRetention {
			t.Errorf("%s: %v %v", i.Key, k.Kind, err)
		}
		return nil
	})
	if n != archive.KeepRetentionRuns {
		t.Fatalf("%d records kept, want %d", n, archive.KeepRetentionRuns)
	}
}
