// Package storetest is the conformance suite for archive.Store. Every store
// (file, S3, HTTP client in front of walstored, and wrappers) calls Run from
// its own tests; a new store is proven by plugging it in, not by new tests.
//
// Objects written by the suite are real envelopes under keys of the form
// <archive>/backups/<case>/..., so the same suite also runs through
// walstored, which only accepts well-formed objects.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
)

// Options tunes the suite for a store.
type Options struct {
	// ListObjects is how many objects the pagination case writes; it must
	// exceed the store's page size (S3: 1000). Default 1100.
	ListObjects int
	// LargeObject is the raw size of the large-object case; default 40 MiB,
	// above the S3 store's multipart threshold.
	LargeObject int
}

// Run runs every case against stores made by newStore. Each case gets its
// own archive name, so stores may share a backend between cases.
func Run(t *testing.T, newStore func(t *testing.T) archive.Store, opt Options) {
	if opt.ListObjects == 0 {
		opt.ListObjects = 1100
	}
	if opt.LargeObject == 0 {
		opt.LargeObject = 40 << 20
	}
	cases := []struct {
		name string
		fn   func(*testing.T, archive.Store, string)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutIfAbsent", testPutIfAbsent},
		{"Idempotency", testIdempotency},
		{"ConcurrentPut", testConcurrentPut},
		{"NotFound", testNotFound},
		{"Stat", testStat},
		{"ListPrefixes", testListPrefixes},
		{"ListPagination", func(t *testing.T, s archive.Store, a string) { testListPagination(t, s, a, opt.ListObjects) }},
		{"Delete", testDelete},
		{"LargeObject", func(t *testing.T, s archive.Store, a string) { testLargeObject(t, s, a, opt.LargeObject) }},
		{"CancelMidUpload", testCancelMidUpload},
		{"ShortBody", testShortBody},
		{"InvalidKeys", testInvalidKeys},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			c.fn(t, s, ArchiveName(t))
		})
	}
}

// ArchiveName returns a fresh archive name for a test.
func ArchiveName(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("st-%x", b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// Object returns an envelope of n random bytes, half of them compressible.
func Object(t testing.TB, n int) *archive.Object {
	raw := make([]byte, n)
	rand.Read(raw[:n/2])
	obj, err := archive.NewEncoder().EncodeBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func put(t *testing.T, s archive.Store, key string, obj *archive.Object) {
	t.Helper()
	if err := s.Put(ctx(t), key, obj.Reader(), obj.Size()); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, s archive.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func keys(t *testing.T, s archive.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(ctx(t), prefix, func(i archive.Info) error { out = append(out, i.Key); return nil }); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return out
}

func testRoundTrip(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/rt/obj"
	obj := Object(t, 100_000)
	put(t, s, key, obj)
	if got := get(t, s, key); !bytes.Equal(got, obj.Bytes()) {
		t.Fatalf("get returned %d bytes that differ from the %d put", len(got), obj.Size())
	}
	hdr, raw, err := archive.GetObject(ctx(t), s, key)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := io.Copy(io.Discard, raw); err != nil {
		t.Fatalf("verified read: %v", err)
	}
	if hdr.Digest != obj.Header.Digest {
		t.Fatal("digest changed in the store")
	}
	empty := Object(t, 0)
	put(t, s, a+"/backups/rt/empty", empty)
	if got := get(t, s, a+"/backups/rt/empty"); !bytes.Equal(got, empty.Bytes()) {
		t.Fatal("empty object changed")
	}
}

func testPutIfAbsent(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/pia/obj"
	first, second := Object(t, 5000), Object(t, 6000)
	put(t, s, key, first)
	for _, obj := range []*archive.Object{first, second} {
		err := s.Put(ctx(t), key, obj.Reader(), obj.Size())
		if !errors.Is(err, archive.ErrExists) {
			t.Fatalf("second put: got %v, want ErrExists", err)
		}
	}
	if got := get(t, s, key); !bytes.Equal(got, first.Bytes()) {
		t.Fatal("stored object was replaced")
	}
}

func testIdempotency(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/idem/obj"
	obj, other := Object(t, 5000), Object(t, 5000)
	if out, err := archive.PutObject(ctx(t), s, key, obj); err != nil || out != archive.Stored {
		t.Fatalf("first PutObject: %v %v", out, err)
	}
	if out, err := archive.PutObject(ctx(t), s, key, obj); err != nil || out != archive.AlreadyStored {
		t.Fatalf("same content: got %v %v, want AlreadyStored", out, err)
	}
	_, err := archive.PutObject(ctx(t), s, key, other)
	var ce *archive.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, archive.ErrConflict) {
		t.Fatalf("other content: got %v, want a ConflictError", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, obj.Header.Digest.String()) || !strings.Contains(msg, other.Header.Digest.String()) {
		t.Fatalf("conflict message does not name both checksums: %s", msg)
	}
	if got := get(t, s, key); !bytes.Equal(got, obj.Bytes()) {
		t.Fatal("stored object was replaced")
	}
}

func testConcurrentPut(t *testing.T, s archive.Store, a string) {
	const n = 16
	key := a + "/backups/race/obj"
	objs := make([]*archive.Object, n)
	for i := range objs {
		objs[i] = Object(t, 64<<10)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(ctx(t), key, objs[i].Reader(), objs[i].Size())
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("puts %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, archive.ErrExists):
			t.Fatalf("put %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no put succeeded")
	}
	if got := get(t, s, key); !bytes.Equal(got, objs[winner].Bytes()) {
		t.Fatal("stored object is not the winner's")
	}
}

func testNotFound(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/nf/missing"
	if _, err := s.Get(ctx(t), key); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("get: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx(t), key); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("stat: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx(t), key); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("delete: %v, want ErrNotFound", err)
	}
	if got := keys(t, s, a+"/backups/nf/"); len(got) != 0 {
		t.Errorf("list of an empty prefix: %v", got)
	}
}

func testStat(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/stat/obj"
	obj := Object(t, 12345)
	before := time.Now().Add(-time.Minute)
	put(t, s, key, obj)
	info, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Size != obj.Size() {
		t.Fatalf("stat: %+v, want key %s size %d", info, key, obj.Size())
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(time.Minute)) {
		t.Fatalf("stat: implausible mtime %v", info.ModTime)
	}
}

func testListPrefixes(t *testing.T, s archive.Store, a string) {
	want := []string{
		a + "/backups/l/a-b/1",
		a + "/backups/l/a/1",
		a + "/backups/l/a/2",
		a + "/backups/l/a1",
		a + "/backups/l/b/x/y",
		a + "/meta/system-like",
	}
	obj := Object(t, 100)
	for _, k := range []int{3, 0, 5, 1, 4, 2} {
		put(t, s, want[k], obj)
	}
	check := func(prefix string, exp []string) {
		t.Helper()
		got := keys(t, s, prefix)
		if strings.Join(got, ",") != strings.Join(exp, ",") {
			t.Errorf("list %q:\n got %v\nwant %v", prefix, got, exp)
		}
	}
	check(a+"/", want)
	check(a+"/backups/l/", want[:5])
	check(a+"/backups/l/a", want[:4])
	check(a+"/backups/l/a/", want[1:3])
	check(a+"/backups/l/b/x/", want[4:5])
	check(a+"/backups/l/zzz", nil)
	var sizes []int64
	if err := s.List(ctx(t), a+"/meta/", func(i archive.Info) error { sizes = append(sizes, i.Size); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 1 || sizes[0] != obj.Size() {
		t.Errorf("list sizes: %v, want [%d]", sizes, obj.Size())
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx(t), a+"/", func(archive.Info) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("list must stop at fn's first error and return it: n=%d err=%v", n, err)
	}
}

func testListPagination(t *testing.T, s archive.Store, a string, n int) {
	obj := Object(t, 10)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			key := fmt.Sprintf("%s/backups/many/%05d", a, i)
			if err := s.Put(ctx(t), key, obj.Reader(), obj.Size()); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got := keys(t, s, a+"/backups/many/")
	if len(got) != n {
		t.Fatalf("listed %d objects, put %d", len(got), n)
	}
	for i, k := range got {
		if want := fmt.Sprintf("%s/backups/many/%05d", a, i); k != want {
			t.Fatalf("key %d: %s, want %s (order or duplicates)", i, k, want)
		}
	}
}

func testDelete(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/del/deep/obj"
	keep := a + "/backups/del/keep"
	obj := Object(t, 1000)
	put(t, s, key, obj)
	put(t, s, keep, obj)
	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), key); !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if got := keys(t, s, a+"/backups/del/"); len(got) != 1 || got[0] != keep {
		t.Fatalf("list after delete: %v", got)
	}
	put(t, s, key, obj) // the name is free again
}

func testLargeObject(t *testing.T, s archive.Store, a string, size int) {
	key := a + "/backups/large/obj"
	raw := make([]byte, size)
	rand.Read(raw) // incompressible: the payload is as large as the raw data
	enc := archive.NewEncoder()
	enc.Compression = archive.NoCompression
	obj, err := enc.EncodeBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, key, obj)
	_, rc, err := archive.GetObject(ctx(t), s, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatal("large object changed in the store")
	}
}

// stallReader yields its data, then blocks until released or until its
// context ends, as a network body does when its connection is torn down.
type stallReader struct {
	ctx     context.Context
	data    []byte
	release <-chan struct{}
	stalled chan<- struct{}
	once    sync.Once
}

func (r *stallReader) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	r.once.Do(func() { close(r.stalled) })
	select {
	case <-r.release:
	case <-r.ctx.Done():
	}
	return 0, io.ErrUnexpectedEOF
}

func testCancelMidUpload(t *testing.T, s archive.Store, a string) {
	for _, size := range []int{1 << 20, 24 << 20} {
		key := fmt.Sprintf("%s/backups/cancel/%d", a, size)
		obj := Object(t, size)
		release := make(chan struct{})
		stalled := make(chan struct{})
		c, cancel := context.WithCancel(ctx(t))
		r := &stallReader{ctx: c, data: obj.Bytes()[:obj.Size()/2], release: release, stalled: stalled}
		done := make(chan error, 1)
		go func() { done <- s.Put(c, key, r, obj.Size()) }()
		select {
		case <-stalled:
		case err := <-done:
			t.Fatalf("put returned before its body ended: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("upload never reached the middle")
		}
		cancel()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			close(release)
			t.Fatal("put did not return within 30s of its context being cancelled")
		}
		close(release)
		if err == nil {
			t.Fatal("cancelled put reported success")
		}
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, archive.ErrNotFound) {
			t.Fatalf("after a cancelled put, stat says %v, want ErrNotFound", err)
		}
		if got := keys(t, s, key); len(got) != 0 {
			t.Fatalf("after a cancelled put, list shows %v", got)
		}
		put(t, s, key, obj) // and the name is still free
	}
}

func testShortBody(t *testing.T, s archive.Store, a string) {
	key := a + "/backups/short/obj"
	obj := Object(t, 5000)
	half := bytes.NewReader(obj.Bytes()[:obj.Size()/2])
	if err := s.Put(ctx(t), key, io.NopCloser(half), obj.Size()); err == nil {
		t.Fatal("put of a body shorter than its size succeeded")
	}
	if _, err := s.Stat(ctx(t), key); !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("after a short put, stat says %v, want ErrNotFound", err)
	}
}

func testInvalidKeys(t *testing.T, s archive.Store, a string) {
	obj := Object(t, 10)
	for _, key := range []string{"", "/abs", a + "/../x", a + "//x", a + "/.hidden", a + "/x\x00y", a + "/x/", a + "/ü", a + "/x y", strings.Repeat("a", 600)} {
		if err := s.Put(ctx(t), key, obj.Reader(), obj.Size()); !errors.Is(err, archive.ErrInvalid) {
			t.Errorf("put %q: %v, want ErrInvalid", key, err)
		}
		if _, err := s.Get(ctx(t), key); !errors.Is(err, archive.ErrInvalid) {
			t.Errorf("get %q: %v, want ErrInvalid", key, err)
		}
	}
}
