package storeurl_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/storetest"
	"github.com/walstore/walstore/store/storeurl"
)

// The conformance suite through the registry: every backend that needs
// no outside server, opened by URL as the commands open it (S3 runs in
// tests/, against MinIO).
func TestRegistryConformance(t *testing.T) {
	ctx := context.Background()
	open := func(t *testing.T, u string, a store.Access) store.Store {
		t.Helper()
		s, err := storeurl.Open(ctx, u, a)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			u := "file://" + t.TempDir()
			if err := storeurl.Create(ctx, u); err != nil {
				t.Fatal(err)
			}
			return open(t, u, store.Access{})
		}, storetest.Options{})
	})
	t.Run("mem", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return open(t, "mem://"+strings.ReplaceAll(t.Name(), "/", "-"), store.Access{})
		}, storetest.Options{})
	})
	t.Run("walstored", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			ts := httptest.NewServer(server.New(server.Config{Store: memstore.New(), Passthrough: true}))
			t.Cleanup(ts.Close)
			return open(t, ts.URL, store.Access{})
		}, storetest.Options{})
	})
	t.Run("two walstored", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			ms := memstore.New()
			a := httptest.NewServer(server.New(server.Config{Store: ms, Passthrough: true}))
			b := httptest.NewServer(server.New(server.Config{Store: ms, Passthrough: true}))
			t.Cleanup(a.Close)
			t.Cleanup(b.Close)
			return open(t, a.URL+","+b.URL, store.Access{})
		}, storetest.Options{})
	})
}

// Two opens of one mem:// URL are one store.
func TestMemIsOneStorePerName(t *testing.T) {
	ctx := context.Background()
	a, _ := storeurl.Open(ctx, "mem://shared", store.Access{})
	b, _ := storeurl.Open(ctx, "mem://shared", store.Access{})
	if err := a.Put(ctx, "k", store.Bytes([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "k"); err != nil {
		t.Fatalf("the second open does not see the first's object: %v", err)
	}
}

// Every URL mistake is ErrInvalid with the URL in the message; what
// walstored may front and what it may not.
func TestRegistryRefuses(t *testing.T) {
	for _, u := range []string{"", "ftp://h", "file://relative", "file:///srv/x?y", "s3://b/p?nonsense=1", "http://h:1/path", "http://u:p@h:1", "mem://", "mem://a/b", "https://a:1,ftp://b"} {
		if err := storeurl.Check(u); !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), "repository") && !strings.Contains(err.Error(), "URL") {
			t.Errorf("Check(%q) = %v", u, err)
		}
	}
	if err := storeurl.Check("mem://scratch"); err == nil || !strings.Contains(err.Error(), "keeps nothing past this process") {
		t.Errorf("a command may use the memory store: %v", err)
	}
	for u, ok := range map[string]bool{"file:///srv/walstore": true, "s3://b/p?endpoint=h:9000": true, "http://h:7480": false, "https://a:1,https://b:1": false, "mem://x": false} {
		if _, err := storeurl.Storage(u); (err == nil) != ok {
			t.Errorf("Storage(%q) = %v, want ok=%v", u, err, ok)
		}
	}
	if !storeurl.Served("https://a:1,https://b:1") || storeurl.Served("file:///x") {
		t.Error("Served")
	}
	dir := filepath.Join(t.TempDir(), "new")
	if err := storeurl.Create(context.Background(), "file://"+dir); err != nil {
		t.Fatalf("Create: %v", err)
	}
}
