package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

func segmentObject(t *testing.T, n wal.Name) *envelope.Object {
	t.Helper()
	enc := envelope.NewEncoder()
	enc.SystemID = waltest.SystemID
	obj, err := enc.EncodeBytes(waltest.Segment(waltest.SystemID, n, 1<<20), archive.Layout{Archive: "main"}.WAL(n))
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func put(t *testing.T, url, key string, body []byte) (int, string) {
	t.Helper()
	a, rest, _ := strings.Cut(key, "/")
	req, _ := http.NewRequest("PUT", url+"/v1/archives/"+a+"/objects/"+rest, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A damaged body is refused (422) and stored nowhere; the honest retry
// is stored; a stored copy damaged afterwards is repaired by the next
// push of the same content, and counted.
func TestDamagedBodiesAndRepair(t *testing.T) {
	ms := memstore.New()
	s := New(Config{Store: ms})
	ts := httptest.NewServer(s)
	defer ts.Close()
	n := waltest.Name("000000010000000000000005")
	obj := segmentObject(t, n)
	key := "main/wal/" + n.String()
	bad := bytes.Clone(obj.Bytes())
	bad[len(bad)/2] ^= 0x01
	if code, body := put(t, ts.URL, key, bad); code != http.StatusUnprocessableEntity || !strings.Contains(body, "damaged") {
		t.Fatalf("damaged body: %d %s", code, body)
	}
	if _, err := ms.Stat(context.Background(), key); err == nil {
		t.Fatal("a damaged body was stored")
	}
	if code, body := put(t, ts.URL, key, obj.Bytes()); code != http.StatusCreated {
		t.Fatalf("honest retry: %d %s", code, body)
	}
	ms.Corrupt(key, len(obj.Bytes())-100)
	if code, body := put(t, ts.URL, key, obj.Bytes()); code != http.StatusCreated {
		t.Fatalf("push over a damaged copy: %d %s, want it repaired (201)", code, body)
	}
	a, _ := archive.New(ms, "main")
	_, rc, err := a.OpenWAL(context.Background(), n)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
	}
	if err != nil {
		t.Fatalf("after the repair: %v", err)
	}
	if got := testutil.ToFloat64(s.metrics.repaired.WithLabelValues("main")); got != 1 {
		t.Fatalf("repaired counter: %v", got)
	}
	// An intact copy is never replaced: the same push again is identical.
	if code, _ := put(t, ts.URL, key, obj.Bytes()); code != http.StatusConflict {
		t.Fatalf("push over an intact copy: %d, want 409 exists", code)
	}
}

// The request body budget: past it, a push is told to retry (503 with
// Retry-After) before a byte is read, and memory is given back after.
func TestMemoryBudget(t *testing.T) {
	s := New(Config{Store: memstore.New(), MemoryLimit: 3 << 20, BufferLimit: 3 << 20})
	ts := httptest.NewServer(s)
	defer ts.Close()
	obj := segmentObject(t, waltest.Name("000000010000000000000006"))
	// Hold the budget with a body that trickles in.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(obj.Bytes()[:4096])
		time.Sleep(time.Second)
		pw.Write(obj.Bytes()[4096:])
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", ts.URL+"/v1/archives/main/objects/wal/000000010000000000000006", pr)
	req.ContentLength = obj.Size()
	done := make(chan int)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.door.MemoryInUse() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	other := segmentObject(t, waltest.Name("000000010000000000000007"))
	other2 := segmentObject(t, waltest.Name("000000010000000000000008"))
	code1, _ := put(t, ts.URL, "main/wal/000000010000000000000007", other.Bytes())
	code2, body := put(t, ts.URL, "main/wal/000000010000000000000008", other2.Bytes())
	if code1 != http.StatusCreated && code2 != http.StatusServiceUnavailable {
		t.Fatalf("over the budget: %d, %d %s; want one 503", code1, code2, body)
	}
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("the trickling push: %d", code)
	}
	if s.door.MemoryInUse() != 0 {
		t.Fatalf("%d bytes still taken from the budget", s.door.MemoryInUse())
	}
}

// A client that goes away mid-body is not a store error; the bytes
// counted in are the bytes that came.
func TestAbortedBodyIsNotAStoreError(t *testing.T) {
	s := New(Config{Store: memstore.New()})
	ts := httptest.NewServer(s)
	defer ts.Close()
	obj := segmentObject(t, waltest.Name("000000010000000000000009"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /v1/archives/main/objects/wal/000000010000000000000009 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", obj.Size())
	conn.Write(obj.Bytes()[:200000])
	conn.Close()
	time.Sleep(300 * time.Millisecond)
	if got := testutil.ToFloat64(s.metrics.storeErrs.WithLabelValues("put")); got != 0 {
		t.Fatalf("store errors: %v after a client went away", got)
	}
	if got := testutil.ToFloat64(s.metrics.bytesIn.WithLabelValues("put")); got > 200000 || got < 100000 {
		t.Fatalf("bytes in: %v, want what was received (about 200000), not the claimed %d", got, obj.Size())
	}
}

// The maps of waiters and per-client slots hold only what is in flight.
func TestMapsDoNotGrow(t *testing.T) {
	s := New(Config{Store: memstore.New()})
	ts := httptest.NewServer(s)
	defer ts.Close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", ts.URL+fmt.Sprintf("/v1/archives/main/objects/wal/0000000100000000000000%02X", i), nil)
			req.Header.Set("Walstore-Wait", "200ms")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := s.waiting.len(); n != 0 {
		t.Fatalf("%d keys still waited for", n)
	}
	if n := s.limits.entries(); n != 0 {
		t.Fatalf("%d clients still tracked", n)
	}
}

// The newest segment is the one furthest along the WAL, not the one on
// the highest timeline.
func TestNewestByPosition(t *testing.T) {
	m := newMetrics(memstore.New())
	m.pushed("a", waltest.Name("000000020000000000000005"), 1<<20)
	m.pushed("a", waltest.Name("000000010000000000000009"), 1<<20)
	m.pushed("a", waltest.Name("000000020000000000000007"), 1<<20)
	if got := m.archives["a"].newest.String(); got != "000000010000000000000009" {
		t.Fatalf("newest: %s", got)
	}
	m.pushed("b", waltest.Name("000000030000000000000004"), 1<<20)
	m.pushed("b", waltest.Name("000000020000000000000008"), 1<<20)
	if got := m.archives["b"].newest.String(); got != "000000020000000000000008" {
		t.Fatalf("newest: %s", got)
	}
}
