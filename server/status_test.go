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

	"github.com/walstore/walstore/tests/testenv"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/server/auth"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/multistore"
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
	// One archive by name (?archive=): still only what the token may read.
	if _, body := get(t, ts.URL+"/?archive=a000", one); !strings.Contains(body, `id="no-archives"`) || strings.Contains(body, `data-archive="a000"`) {
		t.Errorf("a fetch token of a001 asking for a000 sees it")
	}
	if _, body := get(t, ts.URL+"/?archive=a000", adm); !strings.Contains(body, `data-archive="a000"`) || strings.Contains(body, `data-archive="a001"`) {
		t.Errorf("the admin's page of a000 alone shows the wrong archives")
	}
	// Never a token in a URL: the page is not served for one in the query.
	if code, _ := get(t, ts.URL+"/?token="+adm, ""); code != 401 {
		t.Errorf("a token in the URL was accepted: %d", code)
	}
}

// The rough edges of issue 28, each with what it must not do: store names
// (paths, buckets, endpoints) only for admin, on /v1/stores and the
// page; the page never in a frame; /v1/notify only on an instance with
// peers, and then only with a peer (or admin) token; a range past an
// object's end is 416, not an empty 206.
func TestLeastPrivilegeEdges(t *testing.T) {
	ms := memstore.New()
	fill(t, ms, 1)
	adm, l1 := mint(t, "ops", "admin", "*")
	met, l2 := mint(t, "prom", "metrics", "*")
	fet, l3 := mint(t, "standby", "fetch", "*")
	peer, l4 := mint(t, "storage-b", "peer", "*")
	push, l5 := mint(t, "db1", "push", "*")
	tk := tokens(t, l1, l2, l3, l4, l5)
	srv := server.New(server.Config{Store: ms, Tokens: tk, ScanInterval: time.Hour})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	desc := store.Describe(ms)
	for _, tc := range []struct {
		token string
		names bool
	}{{adm, true}, {met, false}} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/stores", nil)
		req.Header.Set("Authorization", "Bearer "+tc.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body := resp.StatusCode, string(b)
		if code != 200 || strings.Contains(body, desc) != tc.names {
			t.Errorf("/v1/stores: %d %s (store %q shown: want %v)", code, body, desc, tc.names)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/", nil)
	req.SetBasicAuth("", fet)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("the page may be framed: %v", resp.Header)
	}
	notify := func(url, token string) int {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/notify?key=a000/wal/000000010000000000000001&size=16777216", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := notify(ts.URL, peer); c != http.StatusNotFound {
		t.Errorf("notify of an instance without peers: %d, want 404", c)
	}
	withPeers := httptest.NewServer(server.New(server.Config{Store: ms, Tokens: tk, ScanInterval: time.Hour, Peers: []string{"http://127.0.0.1:1"}}))
	defer withPeers.Close()
	for _, tc := range []struct {
		name, token string
		code        int
	}{{"no token", "", 401}, {"a push token", push, 403}, {"a fetch token", fet, 403}, {"a peer token", peer, 204}} {
		if c := notify(withPeers.URL, tc.token); c != tc.code {
			t.Errorf("notify with %s: %d, want %d", tc.name, c, tc.code)
		}
	}
	hs, _ := httpstore.New(ts.URL, httpstore.Options{Token: adm})
	var key string
	ms.List(context.Background(), "a000/wal/", func(i store.Info) error { key = i.Key; return nil })
	info, err := ms.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/v1/archives/a000/objects/"+strings.TrimPrefix(key, "a000/"), nil)
	req.Header.Set("Authorization", "Bearer "+adm)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", info.Size+10, info.Size+20))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", info.Size) {
		t.Errorf("a range past the end: %d %q, want 416 with the size", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	if rc, err := hs.GetRange(context.Background(), key, 0, 10); err != nil {
		t.Errorf("a range inside: %v", err)
	} else {
		rc.Close()
	}
}

// The page is live: a segment pushed through walstored shows as the
// archive's newest at once, not at the next catalog scan (an hour here).
func TestStatusShowsPushesAtOnce(t *testing.T) {
	ms := memstore.New()
	fill(t, ms, 1)
	srv := server.New(server.Config{Store: ms, ScanInterval: time.Hour})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx)
	testenv.WaitFor(t, 30*time.Second, "the first scan", func() bool {
		_, body := get(t, ts.URL+"/v1/status", "")
		return strings.Contains(body, "000000010000000000000002")
	})
	hs, _ := httpstore.New(ts.URL, httpstore.Options{})
	a, _ := archive.New(hs, "a000")
	name := waltest.Name("000000010000000000000005")
	enc := a.Encoder()
	enc.SystemID = 7
	obj, err := enc.EncodeBytes(waltest.Segment(7, name, 1<<20), a.Layout.WAL(name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutWAL(context.Background(), name, obj); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, ts.URL+"/v1/status", ""); !strings.Contains(body, `"newest_segment":"000000010000000000000005"`) {
		t.Fatalf("the pushed segment is not the newest on the page: %.600s", body)
	}
	// The WAL-per-hour chart says its scale and its time span.
	if _, page := get(t, ts.URL+"/", ""); !strings.Contains(page, `class="axis-label" x="54" y="10" text-anchor="end">`) || !strings.Contains(page, " UTC</text>") {
		t.Fatalf("the hourly chart has no values on its axes")
	}
}

// The page lists the stores even when there is one, each with what the
// archives hold, the space left on a file store and the objects it owes;
// a store that cannot be listed shows as down with the reason.
func TestStatusPageShowsStores(t *testing.T) {
	type storeJSON struct {
		Name     string `json:"name"`
		Up       bool   `json:"up"`
		Stored   int64  `json:"stored_bytes"`
		Free     int64  `json:"free_bytes"`
		Capacity int64  `json:"capacity_bytes"`
		Owed     int    `json:"owed_objects"`
	}
	status := func(t *testing.T, s store.Store) ([]storeJSON, string) {
		srv := server.New(server.Config{Store: s, ScanInterval: time.Hour})
		ts := httptest.NewServer(srv)
		t.Cleanup(ts.Close)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go srv.Watch(ctx)
		var st struct {
			Scanned  *time.Time  `json:"scanned_at"`
			Stores   []storeJSON `json:"stores"`
			Archives []any       `json:"archives"`
		}
		testenv.WaitFor(t, 30*time.Second, "the first scan", func() bool {
			_, body := get(t, ts.URL+"/v1/status", "")
			st.Scanned = nil
			json.Unmarshal([]byte(body), &st)
			return st.Scanned != nil
		})
		_, page := get(t, ts.URL+"/", "")
		return st.Stores, page
	}
	t.Run("one file store", func(t *testing.T) {
		fs, err := filestore.Open(t.TempDir(), filestore.Options{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, fs, 2)
		stores, page := status(t, fs)
		if len(stores) != 1 || !stores[0].Up || stores[0].Stored < 2<<10 || stores[0].Free <= 0 || stores[0].Capacity < stores[0].Free {
			t.Fatalf("stores: %+v", stores)
		}
		if !strings.Contains(page, `<tr class="store-row" data-up="true"`) || !strings.Contains(page, " of ") {
			t.Fatalf("the page does not list the store with its space")
		}
	})
	t.Run("two stores, one behind", func(t *testing.T) {
		a, b := memstore.New(), memstore.New()
		ms, err := multistore.New([]multistore.Member{{Name: "a", Store: a}, {Name: "b", Store: b}}, multistore.Options{Quorum: 1, Identity: archive.Identify})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, a, 1) // only in a: b owes nothing it knows of yet, but both report
		stores, page := status(t, ms)
		if len(stores) != 2 || stores[0].Name != "a" || stores[1].Name != "b" || stores[0].Stored == 0 || stores[0].Capacity != 0 {
			t.Fatalf("stores: %+v", stores)
		}
		if !strings.Contains(page, "no limit known (object store)") {
			t.Fatalf("an object store's space is not explained")
		}
	})
	t.Run("a store that cannot be listed", func(t *testing.T) {
		stores, page := status(t, failingList{memstore.New()})
		if len(stores) != 1 || stores[0].Up {
			t.Fatalf("stores: %+v", stores)
		}
		if !strings.Contains(page, `data-up="false"`) || !strings.Contains(page, "disk on fire") {
			t.Fatalf("the page does not show the store down with why")
		}
	})
}

// failingList is a store whose listing fails.
type failingList struct{ store.Store }

func (failingList) List(context.Context, string, func(store.Info) error) error {
	return fmt.Errorf("list: disk on fire")
}
