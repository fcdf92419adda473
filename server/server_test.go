package server_test

import (
	"bufio"
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

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/archive/httpstore"
	"github.com/walstore/walstore/archive/storetest"
	"github.com/walstore/walstore/server"
)

func setup(t *testing.T) (*httpstore.Store, string) {
	fs, err := filestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(server.New(server.Config{Store: fs}))
	t.Cleanup(ts.Close)
	hs, _ := httpstore.New(ts.URL, httpstore.Options{})
	return hs, ts.URL
}

// A GET that may wait returns as soon as the object is pushed, not at the
// end of its wait; one that finds nothing returns "not found" at the end.
func TestGetWaitsForPush(t *testing.T) {
	hs, _ := setup(t)
	ctx := context.Background()
	key := "main/backups/x/obj"
	obj := storetest.Object(t, 1000)
	go func() {
		time.Sleep(300 * time.Millisecond)
		hs.Put(ctx, key, obj.Reader(), obj.Size())
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
	if !errors.Is(err, archive.ErrNotFound) || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("wait for a missing object: %v after %v", err, time.Since(start))
	}
}

// The edge refuses what no store should see, in one line each.
func TestEdgeRefusals(t *testing.T) {
	_, url := setup(t)
	obj := storetest.Object(t, 100)
	for _, tc := range []struct {
		name, method, path string
		body               io.Reader
		length             int64
		status             int
	}{
		{"unknown kind", "PUT", "/v1/archives/main/objects/etc/passwd", obj.Reader(), obj.Size(), 400},
		{"bad WAL name", "PUT", "/v1/archives/main/objects/wal/notawalfile", obj.Reader(), obj.Size(), 400},
		{"not an envelope", "PUT", "/v1/archives/main/objects/backups/x/y", strings.NewReader(strings.Repeat("x", 100)), 100, 400},
		{"length mismatch", "PUT", "/v1/archives/main/objects/backups/x/z", io.MultiReader(obj.Reader(), strings.NewReader("extra")), obj.Size() + 5, 400},
		{"segment without system id", "PUT", "/v1/archives/main/objects/wal/000000010000000000000001", obj.Reader(), obj.Size(), 400},
		{"bad archive", "GET", "/v1/archives/..%2Fetc/objects/wal/000000010000000000000001", nil, 0, 400},
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
	fmt.Fprintf(conn, "PUT /v1/archives/main/objects/backups/x/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", archive.MaxObjectSize+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %v %v, want 413", resp, err)
	}
}
