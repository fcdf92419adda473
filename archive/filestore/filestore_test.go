package filestore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/archive/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		s, err := filestore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{})
}

// A crash between writing the temp file and publishing it leaves a dot file
// that List never shows and SweepTemp removes.
func TestTempFilesInvisibleAndSwept(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	obj := storetest.Object(t, 100)
	ctx := context.Background()
	if err := s.Put(ctx, "a/wal/000000010000000000000001", obj.Reader(), obj.Size()); err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(dir, "a/wal/.000000010000000000000002.tmp-123")
	if err := os.WriteFile(torn, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	s.List(ctx, "a/", func(i archive.Info) error { keys = append(keys, i.Key); return nil })
	if strings.Join(keys, ",") != "a/wal/000000010000000000000001" {
		t.Fatalf("list shows %v", keys)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(torn, old, old)
	n, err := s.SweepTemp(time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Fatal("temp file still there")
	}
}
