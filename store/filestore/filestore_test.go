package filestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/storetest"
)

func open(t *testing.T, dir string, opt filestore.Options) *filestore.Store {
	t.Helper()
	s, err := filestore.Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir(), filestore.Options{}) }, storetest.Options{})
}

// A crash between writing the temp file and publishing it leaves a dot
// file that List never shows. SweepTemp removes it at once when the
// process that wrote it is gone, and after the age limit when it cannot
// tell (another host).
func TestTempFilesInvisibleAndSwept(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, filestore.Options{})
	ctx := context.Background()
	if err := s.Put(ctx, "a/wal/1", store.Bytes([]byte("whole"))); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	dead := filepath.Join(dir, "a/wal/.2.tmp-"+strings.ReplaceAll(host, ".", "-")+"-999999999-1")
	other := filepath.Join(dir, "a/wal/.3.tmp-otherhost-12-1")
	for _, p := range []string{dead, other} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	s.List(ctx, "a/", func(i store.Info) error { keys = append(keys, i.Key); return nil })
	if strings.Join(keys, ",") != "a/wal/1" {
		t.Fatalf("list shows %v", keys)
	}
	if n, err := s.SweepTemp(time.Hour); err != nil || n != 1 {
		t.Fatalf("sweep at start: removed %d (%v), want the dead writer's file only", n, err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatal("the dead writer's temp file is still there")
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(other, old, old)
	if n, err := s.SweepTemp(time.Hour); err != nil || n != 1 {
		t.Fatalf("sweep of an old file: %d %v", n, err)
	}
}

// Clients never create a repository: a missing root is refused (a
// configuration error: never "not in the archive"), and a
// reader writes nothing, so a read-only mount works.
func TestRootMustExistAndReadersDoNotWrite(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "not-mounted")
	if _, err := filestore.Open(missing, filestore.Options{}); !errors.Is(err, errkind.ErrConfig) || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("open of a missing root: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatal("open created the root")
	}
	open(t, missing, filestore.Options{Create: true})
	ro := t.TempDir()
	w := open(t, ro, filestore.Options{})
	w.Put(context.Background(), "a/b", store.Bytes([]byte("x")))
	os.Chmod(ro, 0o555)
	defer os.Chmod(ro, 0o755)
	r := open(t, ro, filestore.Options{ReadOnly: true})
	if _, err := r.Get(context.Background(), "a/b"); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(context.Background(), "a/c", store.Bytes([]byte("x"))); !errors.Is(err, errkind.ErrForbidden) {
		t.Fatalf("put through a read-only store: %v", err)
	}
}

// A failed put leaves no directory behind; a delete removes the
// directories it empties; errors name no absolute path.
func TestNoEmptyDirectoriesAndNoPaths(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, filestore.Options{})
	ctx := context.Background()
	short := store.Stream(strings.NewReader("abc"), 10)
	err := s.Put(ctx, "arch/backups/x/y/part", short)
	if err == nil {
		t.Fatal("short put succeeded")
	}
	if strings.Contains(err.Error(), dir) {
		t.Errorf("error names the store's path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "arch")); !os.IsNotExist(err) {
		t.Fatal("a failed put left directories behind")
	}
	s.Put(ctx, "arch/keep", store.Bytes([]byte("k")))
	s.Put(ctx, "arch/backups/x/y/part", store.Bytes([]byte("p")))
	if err := s.Delete(ctx, "arch/backups/x/y/part"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "arch/backups")); !os.IsNotExist(err) {
		t.Fatal("delete left empty directories behind")
	}
	if _, err := os.Stat(filepath.Join(dir, "arch/keep")); err != nil {
		t.Fatal(err)
	}
	_ = syscall.ENOTDIR
}
