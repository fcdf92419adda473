package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/memstore"
)

func setup(t *testing.T, cfg server.Config) (*httpstore.Store, string, *memstore.Store) {
	ms := memstore.New()
	if cfg.Store == nil {
		cfg.Store = ms
	}
	ts := httptest.NewServer(server.New(cfg))
	t.Cleanup(ts.Close)
	hs, _ := httpstore.New(ts.URL, httpstore.Options{})
	return hs, ts.URL, ms
}

func object(t *testing.T, key string, n int) *envelope.Object {
	t.Helper()
	obj, err := envelope.NewEncoder().EncodeBytes(bytes.Repeat([]byte("backup data "), n/12+1)[:n], key)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// A GET that may wait returns as soon as the object is pushed, not at the
// end of its wait; one that finds nothing returns "not found" at the end.
func TestGetWaitsForPush(t *testing.T) {
	hs, _, _ := setup(t, server.Config{})
	ctx := context.Background()
	key := "main/backups/x/obj"
	obj := object(t, key, 1000)
	go func() {
		time.Sleep(300 * time.Millisecond)
		hs.Put(ctx, key, store.Bytes(obj.Bytes()))
	}()
	start := time.Now()
	rc, err := hs.GetWait(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("waited %v for an object pushed after 300ms", took)
	}
	start = time.Now()
	_, err = hs.GetWait(ctx, "main/backups/x/never", 700*time.Millisecond)
	if !errors.Is(err, errkind.ErrNotFound) || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("wait for a missing object: %v after %v", err, time.Since(start))
	}
}

// The edge refuses what no store should see, in one line each.
func TestEdgeRefusals(t *testing.T) {
	_, url, _ := setup(t, server.Config{})
	good := object(t, "main/backups/x/y", 100)
	wrongName := object(t, "main/backups/x/other", 100)
	for _, tc := range []struct {
		name, method, path string
		body               io.Reader
		length             int64
		status             int
	}{
		{"unknown kind", "PUT", "/v1/archives/main/objects/etc/passwd", bytes.NewReader(good.Bytes()), good.Size(), 400},
		{"bad WAL name", "PUT", "/v1/archives/main/objects/wal/notawalfile", bytes.NewReader(good.Bytes()), good.Size(), 400},
		{"not an envelope", "PUT", "/v1/archives/main/objects/backups/x/y", strings.NewReader(strings.Repeat("x", 200)), 200, 422},
		{"bound to another name", "PUT", "/v1/archives/main/objects/backups/x/y", bytes.NewReader(wrongName.Bytes()), wrongName.Size(), 400},
		{"length mismatch", "PUT", "/v1/archives/main/objects/backups/x/y", io.MultiReader(bytes.NewReader(good.Bytes()), strings.NewReader("extra")), good.Size() + 5, 400},
		{"a system binding without its identifier", "PUT", "/v1/archives/main/objects/meta/system", bytes.NewReader(object(t, "main/meta/system", 10).Bytes()), object(t, "main/meta/system", 10).Size(), 400},
		{"bad archive", "GET", "/v1/archives/..%2Fetc/objects/wal/000000010000000000000001", nil, 0, 400},
		{"archive starting with a dash", "GET", "/v1/archives/-rf/objects/wal/000000010000000000000001", nil, 0, 400},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.path, tc.body)
		if tc.body != nil {
			req.ContentLength = tc.length
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || strings.Count(strings.TrimSpace(string(b)), "\n") != 0 {
			t.Errorf("%s: %d %s, want %d and one line", tc.name, resp.StatusCode, b, tc.status)
		}
	}
	// A body announced larger than any object is refused before a byte of
	// it is read.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/archives/main/objects/backups/x/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", envelope.MaxObjectSize+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %v %v, want 413", resp, err)
	}
}
