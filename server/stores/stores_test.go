package stores

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/cachestore"
	"github.com/walstore/walstore/store/lazystore"
	"github.com/walstore/walstore/store/storeurl"
)

// open opens a URL through the registry; a marker is required when asked.
func open(ctx context.Context, u string, checkMarker bool) (store.Store, error) {
	s, err := storeurl.Open(ctx, u, store.Access{})
	if err != nil {
		return nil, err
	}
	if checkMarker {
		if err := archive.CheckRepository(ctx, s, u); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// No URL: the default is made (a directory, a repository) and served.
	def := "file://" + filepath.Join(dir, "default")
	st, ms, err := Open(ctx, nil, Options{Default: def, Open: open, CacheBytes: 1 << 20})
	if err != nil || ms != nil {
		t.Fatalf("default: %v", err)
	}
	if _, ok := st.(*cachestore.Store); !ok {
		t.Fatalf("the cache is not the outer layer: %T", st)
	}
	if _, _, err := Open(ctx, nil, Options{Default: def, Open: open}); err != nil {
		t.Fatalf("the default a second time: %v", err)
	}
	// Two stores, one of them a repository that cannot be reached yet
	// (not made): the other serves, the missing one is opened on use.
	a, b := "file://"+filepath.Join(dir, "a"), "file://"+filepath.Join(dir, "b")
	for _, u := range []string{a, b} {
		if err := storeurl.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		s, _ := open(ctx, u, false)
		archive.InitRepository(ctx, s)
	}
	_, ms, err = Open(ctx, []string{a, b}, Options{Open: open, Quorum: 1})
	if err != nil || ms == nil || len(ms.Members()) != 2 {
		t.Fatalf("two stores: %v", err)
	}
	if _, err := LeasedSync(ctx, ms, "", time.Minute); err != nil {
		t.Fatalf("sync: %v", err)
	}
	down := func(ctx context.Context, u string, m bool) (store.Store, error) {
		if u == b {
			return nil, errors.New("connection refused")
		}
		return open(ctx, u, m)
	}
	_, ms, err = Open(ctx, []string{a, b}, Options{Open: down, Quorum: 1})
	if err != nil {
		t.Fatalf("one store down at start: %v", err)
	}
	if _, ok := store.As[*lazystore.Store](ms.Members()[1].Store); !ok {
		t.Fatalf("the store down at start is not opened lazily: %T", ms.Members()[1].Store)
	}
	// What walstored must refuse: another walstored, a memory store, a
	// quorum larger than the stores, a directory that is not a repository.
	for _, tc := range []struct {
		urls   []string
		quorum int
		says   string
	}{
		{[]string{"http://127.0.0.1:7480"}, 0, "not another walstored"},
		{[]string{"mem://x"}, 0, "keeps nothing"},
		{[]string{a}, 2, "quorum"},
		{[]string{"file://" + filepath.Join(dir, "plain")}, 0, "plain"},
	} {
		_, _, err := Open(ctx, tc.urls, Options{Open: open, Quorum: tc.quorum})
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v quorum %d: %v", tc.urls, tc.quorum, err)
		}
		if tc.says != "plain" && !errors.Is(err, errkind.ErrConfig) {
			t.Errorf("%v: not a configuration error: %v", tc.urls, err)
		}
	}
}
