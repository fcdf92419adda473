package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/server"
	"github.com/walstore/walstore/internal/server/auth"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/wal/waltest"
)

// counting counts the calls that reach a store.
type counting struct {
	store.Store
	calls atomic.Int64
}

func (c *counting) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	c.calls.Add(1)
	return c.Store.Get(ctx, k)
}
func (c *counting) Stat(ctx context.Context, k string) (store.Info, error) {
	c.calls.Add(1)
	return c.Store.Stat(ctx, k)
}
func (c *counting) List(ctx context.Context, p string, fn func(store.Info) error) error {
	c.calls.Add(1)
	return c.Store.List(ctx, p, fn)
}
func (c *counting) ListDirs(ctx context.Context, p string) ([]string, error) {
	c.calls.Add(1)
	return store.ListDirs(ctx, c.Store, p)
}

// fill makes n archives of one 1 MiB segment each.
func fill(t *testing.T, s store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		a, _ := archive.New(s, fmt.Sprintf("a%03d", i))
		name := waltest.Name("000000010000000000000002")
		enc := a.Encoder()
		enc.SystemID = 7
		obj, err := enc.EncodeBytes(waltest.Segment(7, name, 1<<20), a.Layout.WAL(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.PutWAL(ctx, name, obj); err != nil {
			t.Fatal(err)
		}
	}
}

func tokens(t *testing.T, lines ...string) *server.Tokens {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	tk, err := server.LoadTokens(p)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func mint(t *testing.T, name, scope, archives string) (token, line string) {
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := auth.ParseScope(scope)
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	if archives != "*" {
		list = strings.Split(archives, ",")
	}
	l, err := auth.Line(name, sc, list, tok)
	if err != nil {
		t.Fatal(err)
	}
	return tok, l
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.SetBasicAuth("ops", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// 200 archives: a page view costs no store call; the data comes from the
// scanner's catalog scan, which reads each archive once per scan.
func TestStatusPageCostsNoStoreCall(t *testing.T) {
	cs := &counting{Store: memstore.New()}
	fill(t, cs, 200)
	srv := server.New(server.Config{Store: cs, ScanInterval: time.Hour})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := cs.calls.Load()
	go srv.Watch(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := get(t, ts.URL+"/v1/status", "")
		var st struct {
			Archives []json.RawMessage `json:"archives"`
		}
		json.Unmarshal([]byte(body), &st)
		if len(st.Archives) == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scan did not show 200 archives: %.300s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	scan := cs.calls.Load() - before
	for range 20 {
		if code, body := get(t, ts.URL+"/", ""); code != 200 || strings.Count(body, `class="archive-row"`) != 200 {
			t.Fatalf("page: %d, %d archive rows", code, strings.Count(body, `class="archive-row"`))
		}
	}
	if extra := cs.calls.Load() - before - scan; extra != 0 {
		t.Fatalf("20 page views made %d store calls; want none (the scan made %d for 200 archives)", extra, scan)
	}
	// Per archive: the catalog (WAL, backups, retired timelines, the
	// quarantine area, the last verify's result), the system binding, the
	// last drill, the last retention run.
	if scan > 200*10 {
		t.Fatalf("one scan made %d store calls for 200 archives", scan)
	}
	t.Logf("one catalog scan of 200 archives: %d store calls; 20 page views: 0", scan)
}

// With a token file, the page needs a fetch or admin token and shows only
// the archives that token may read; nothing of an archive leaks without.
func TestStatusPageAccess(t *testing.T) {
	ms := memstore.New()
	fill(t, ms, 2) // a000, a001
	one, l1 := mint(t, "standby", "fetch", "a001")
	adm, l2 := mint(t, "ops", "admin", "*")
	push, l3 := mint(t, "db1", "push", "*")
	srv := server.New(server.Config{Store: ms, Tokens: tokens(t, l1, l2, l3), ScanInterval: time.Hour})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, body := get(t, ts.URL+"/", adm); strings.Contains(body, "a000") && strings.Contains(body, "a001") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admin's page never showed both archives")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct {
		name, token string
		code        int
		shows, hide []string
	}{
		{"no token", "", 401, nil, []string{"a000", "a001"}},
		{"a wrong token", "wst_" + strings.Repeat("A", 43), 401, nil, []string{"a000", "a001"}},
		{"a push token", push, 401, nil, []string{"a000", "a001"}},
		{"a fetch token of a001", one, 200, []string{"a001"}, []string{"a000"}},
		{"an admin token", adm, 200, []string{"a000", "a001"}, nil},
	} {
		for _, path := range []string{"/", "/v1/status"} {
			code, body := get(t, ts.URL+path, tc.token)
			if code != tc.code {
				t.Errorf("%s %s: %d, want %d", tc.name, path, code, tc.code)
			}
			for _, s := range tc.shows {
				if !strings.Contains(body, s) {
					t.Errorf("%s %s: %s not shown", tc.name, path, s)
				}
			}
			for _, s := range tc.hide {
				if strings.Contains(body, s) {
					t.Errorf("%s %s: shows %s", tc.name, path, s)
				}
			}
		}
	}
	// Never a token in a URL: the page is not served for one in the query.
	if code, _ := get(t, ts.URL+"/?token="+adm, ""); code != 401 {
		t.Errorf("a token in the URL was accepted: %d", code)
	}
}
