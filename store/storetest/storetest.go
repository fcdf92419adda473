// Package storetest is the byte-level conformance checker for store.Store,
// in the style of testing/fstest.TestFS: every backend and every wrapper
// calls Run from its own tests, and a new store is proven by plugging it
// in, not by new tests. It writes random bytes under arbitrary valid keys:
// no envelopes, no archive layout (those are tier 2, proven by
// archive/archivetest).
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Options tunes the checker for a store.
type Options struct {
	// ListObjects is how many objects the pagination case writes; it must
	// exceed the store's page size (S3: 1000). Default 1100.
	ListObjects int
	// LargeObject is the size of the large-object case; default 40 MiB,
	// above the S3 store's multipart threshold.
	LargeObject int
	// Short skips the cases that move a lot of data (for wrappers over
	// the in-memory store, whose bytes are proven elsewhere).
	Short bool
}

// Run runs every case against stores made by newStore. Each case writes
// under its own random prefix, so stores may share a backend.
func Run(t *testing.T, newStore func(t *testing.T) store.Store, opt Options) {
	if opt.ListObjects == 0 {
		opt.ListObjects = 1100
	}
	if opt.LargeObject == 0 {
		opt.LargeObject = 40 << 20
	}
	cases := []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutIfAbsent", testPutIfAbsent},
		{"ConcurrentPut", testConcurrentPut},
		{"NotFound", testNotFound},
		{"Stat", testStat},
		{"ListPrefixes", testListPrefixes},
		{"ListPagination", func(t *testing.T, s store.Store, p string) { testListPagination(t, s, p, opt.ListObjects) }},
		{"ListedIsReadable", testListedIsReadable},
		{"Delete", testDelete},
		{"LargeObject", func(t *testing.T, s store.Store, p string) {
			if opt.Short {
				t.Skip("large objects are proven against the store underneath")
			}
			testLargeObject(t, s, p, opt.LargeObject)
		}},
		{"CancelMidUpload", testCancelMidUpload},
		{"CancelledContext", testCancelledContext},
		{"ShortBody", testShortBody},
		{"LongBody", testLongBody},
		{"PutNeitherClosesNorKeeps", testPutNeitherClosesNorKeeps},
		{"KeyUnderKey", testKeyUnderKey},
		{"InvalidKeys", testInvalidKeys},
		{"Replace", testReplace},
		{"GetRange", testGetRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			c.fn(t, s, Prefix(t))
		})
	}
}

// Prefix returns a fresh key prefix ("st-1a2b3c4d/") for a test.
func Prefix(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("st-%x/", b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// Random returns n random bytes.
func Random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func put(t *testing.T, s store.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(ctx(t), key, store.Bytes(b)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, s store.Store, key string) []byte {
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

func keys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(ctx(t), prefix, func(i store.Info) error { out = append(out, i.Key); return nil }); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return out
}

func testRoundTrip(t *testing.T, s store.Store, p string) {
	for _, n := range []int{0, 1, 100_000} {
		key := fmt.Sprintf("%sround/%d", p, n)
		b := Random(n)
		put(t, s, key, b)
		if got := get(t, s, key); !bytes.Equal(got, b) {
			t.Fatalf("%d bytes put, %d different bytes read back", n, len(got))
		}
	}
}

func testPutIfAbsent(t *testing.T, s store.Store, p string) {
	key := p + "pia"
	first := Random(5000)
	put(t, s, key, first)
	for _, b := range [][]byte{first, Random(6000)} {
		if err := s.Put(ctx(t), key, store.Bytes(b)); !errors.Is(err, errkind.ErrExists) {
			t.Fatalf("second put: got %v, want ErrExists", err)
		}
	}
	if got := get(t, s, key); !bytes.Equal(got, first) {
		t.Fatal("stored object was replaced")
	}
}

func testConcurrentPut(t *testing.T, s store.Store, p string) {
	const n = 16
	key := p + "race"
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = Random(64 << 10)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(ctx(t), key, store.Bytes(bodies[i]))
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
		case !errors.Is(err, errkind.ErrExists):
			t.Fatalf("put %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no put succeeded")
	}
	if got := get(t, s, key); !bytes.Equal(got, bodies[winner]) {
		t.Fatal("stored object is not the winner's")
	}
}

func testNotFound(t *testing.T, s store.Store, p string) {
	key := p + "missing"
	if _, err := s.Get(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
		t.Errorf("get: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
		t.Errorf("stat: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
		t.Errorf("delete: %v, want ErrNotFound", err)
	}
	if got := keys(t, s, p); len(got) != 0 {
		t.Errorf("list of an empty prefix: %v", got)
	}
}

func testStat(t *testing.T, s store.Store, p string) {
	key := p + "stat"
	b := Random(12345)
	before := time.Now().Add(-time.Minute)
	put(t, s, key, b)
	info, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Size != int64(len(b)) {
		t.Fatalf("stat: %+v, want key %s size %d", info, key, len(b))
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(time.Minute)) {
		t.Fatalf("stat: implausible mtime %v", info.ModTime)
	}
}

func testListPrefixes(t *testing.T, s store.Store, p string) {
	want := []string{
		p + "l/a-b/1",
		p + "l/a/1",
		p + "l/a/2",
		p + "l/a1",
		p + "l/b/x/y",
		p + "m/x",
	}
	b := Random(100)
	for _, k := range []int{3, 0, 5, 1, 4, 2} {
		put(t, s, want[k], b)
	}
	check := func(prefix string, exp []string) {
		t.Helper()
		got := keys(t, s, prefix)
		if strings.Join(got, ",") != strings.Join(exp, ",") {
			t.Errorf("list %q:\n got %v\nwant %v", prefix, got, exp)
		}
	}
	check(p, want)
	check(p+"l/", want[:5])
	check(p+"l/a", want[:4])
	check(p+"l/a/", want[1:3])
	check(p+"l/b/x/", want[4:5])
	check(p+"l/zzz", nil)
	var sizes []int64
	if err := s.List(ctx(t), p+"m/", func(i store.Info) error { sizes = append(sizes, i.Size); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 1 || sizes[0] != int64(len(b)) {
		t.Errorf("list sizes: %v, want [%d]", sizes, len(b))
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx(t), p, func(store.Info) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("list must stop at fn's first error and return it: n=%d err=%v", n, err)
	}
}

func testListPagination(t *testing.T, s store.Store, p string, n int) {
	b := Random(10)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.Put(ctx(t), fmt.Sprintf("%smany/%05d", p, i), store.Bytes(b)); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got := keys(t, s, p+"many/")
	if len(got) != n {
		t.Fatalf("listed %d objects, put %d", len(got), n)
	}
	for i, k := range got {
		if want := fmt.Sprintf("%smany/%05d", p, i); k != want {
			t.Fatalf("key %d: %s, want %s (order or duplicates)", i, k, want)
		}
	}
}

// Everything List reports can be Stat'd and read, with the same size.
func testListedIsReadable(t *testing.T, s store.Store, p string) {
	for i, n := range []int{0, 7, 4096, 70_000} {
		put(t, s, fmt.Sprintf("%sr/%d/obj", p, i), Random(n))
	}
	err := s.List(ctx(t), p, func(i store.Info) error {
		st, err := s.Stat(ctx(t), i.Key)
		if err != nil {
			return fmt.Errorf("stat %s: %w", i.Key, err)
		}
		if st.Size != i.Size {
			return fmt.Errorf("%s: listed %d bytes, stat says %d", i.Key, i.Size, st.Size)
		}
		if got := get(t, s, i.Key); int64(len(got)) != i.Size {
			return fmt.Errorf("%s: listed %d bytes, read %d", i.Key, i.Size, len(got))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testDelete(t *testing.T, s store.Store, p string) {
	key := p + "del/deep/obj"
	keep := p + "del/keep"
	b := Random(1000)
	put(t, s, key, b)
	put(t, s, keep, b)
	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if got := keys(t, s, p+"del/"); len(got) != 1 || got[0] != keep {
		t.Fatalf("list after delete: %v", got)
	}
	put(t, s, key, b) // the name is free again
}

func testLargeObject(t *testing.T, s store.Store, p string, size int) {
	key := p + "large"
	b := Random(size)
	put(t, s, key, b)
	if got := get(t, s, key); !bytes.Equal(got, b) {
		t.Fatal("large object changed in the store")
	}
}

// stallBody yields its data, then blocks until released or until its
// context ends, as a network body does when its connection is torn down.
type stallBody struct {
	ctx     context.Context
	data    []byte
	n       int64
	release <-chan struct{}
	stalled chan<- struct{}
	once    sync.Once
}

func (r *stallBody) Len() int64    { return r.n }
func (r *stallBody) Rewind() error { return store.ErrNotRewindable }
func (r *stallBody) Read(p []byte) (int, error) {
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

func testCancelMidUpload(t *testing.T, s store.Store, p string) {
	for _, size := range []int{1 << 20, 24 << 20} {
		key := fmt.Sprintf("%scancel/%d", p, size)
		b := Random(size)
		release := make(chan struct{})
		stalled := make(chan struct{})
		c, cancel := context.WithCancel(ctx(t))
		r := &stallBody{ctx: c, data: b[:size/2], n: int64(size), release: release, stalled: stalled}
		done := make(chan error, 1)
		go func() { done <- s.Put(c, key, r) }()
		select {
		case <-stalled:
		case err := <-done:
			cancel()
			t.Fatalf("put returned before its body ended: %v", err)
		case <-time.After(time.Minute):
			cancel()
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
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
			t.Fatalf("after a cancelled put, stat says %v, want ErrNotFound", err)
		}
		if got := keys(t, s, key); len(got) != 0 {
			t.Fatalf("after a cancelled put, list shows %v", got)
		}
		put(t, s, key, b) // and the name is still free
	}
}

// Every method returns at once, with an error, on a context already done.
func testCancelledContext(t *testing.T, s store.Store, p string) {
	key := p + "cc"
	put(t, s, key, Random(100))
	c, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s with a cancelled context succeeded", op)
		}
	}
	check("put", s.Put(c, p+"cc-new", store.Bytes(Random(100))))
	if rc, err := s.Get(c, key); err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
		check("get", err)
	}
	_, err := s.Stat(c, key)
	check("stat", err)
	check("list", s.List(c, p, func(store.Info) error { return nil }))
	check("delete", s.Delete(c, key))
	if _, err := s.Stat(ctx(t), p+"cc-new"); !errors.Is(err, errkind.ErrNotFound) {
		t.Errorf("a put with a cancelled context stored its object (%v)", err)
	}
	if _, err := s.Stat(ctx(t), key); err != nil {
		t.Errorf("a delete with a cancelled context removed the object (%v)", err)
	}
}

// shortBody claims more bytes than it has.
type shortBody struct {
	*bytes.Reader
	n int64
}

func (b *shortBody) Len() int64    { return b.n }
func (b *shortBody) Rewind() error { _, err := b.Seek(0, io.SeekStart); return err }

func testShortBody(t *testing.T, s store.Store, p string) {
	key := p + "short"
	b := Random(5000)
	if err := s.Put(ctx(t), key, &shortBody{bytes.NewReader(b[:2500]), 5000}); err == nil {
		t.Fatal("put of a body shorter than its length succeeded")
	}
	if _, err := s.Stat(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("after a short put, stat says %v, want ErrNotFound", err)
	}
}

func testLongBody(t *testing.T, s store.Store, p string) {
	key := p + "long"
	b := Random(5000)
	if err := s.Put(ctx(t), key, &shortBody{bytes.NewReader(b), 2500}); err == nil {
		if got := get(t, s, key); len(got) != 2500 {
			t.Fatalf("put of a body longer than its length stored %d bytes", len(got))
		}
		t.Fatal("put of a body longer than its length succeeded")
	}
	if _, err := s.Stat(ctx(t), key); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("after a long put, stat says %v, want ErrNotFound", err)
	}
}

// watchedBody fails the test if anything reads or closes it after Put
// returned.
type watchedBody struct {
	store.Body
	t        *testing.T
	returned atomic.Bool
	closed   atomic.Bool
}

func (w *watchedBody) Read(p []byte) (int, error) {
	if w.returned.Load() {
		w.t.Error("the body was read after Put returned")
	}
	return w.Body.Read(p)
}

func (w *watchedBody) Close() error {
	w.closed.Store(true)
	return nil
}

func testPutNeitherClosesNorKeeps(t *testing.T, s store.Store, p string) {
	w := &watchedBody{Body: store.Bytes(Random(70_000)), t: t}
	if err := s.Put(ctx(t), p+"watched", w); err != nil {
		t.Fatal(err)
	}
	w.returned.Store(true)
	if w.closed.Load() {
		t.Error("Put closed the body")
	}
	time.Sleep(50 * time.Millisecond) // a goroutine still reading would show now
}

// A key under an existing key (a/k, then a/k/sub) is either stored (S3)
// or refused with a permanent error, never a transient one that callers
// would retry for ever; the first object is untouched.
func testKeyUnderKey(t *testing.T, s store.Store, p string) {
	b := Random(100)
	put(t, s, p+"k", b)
	err := s.Put(ctx(t), p+"k/sub", store.Bytes(b))
	if err != nil && !errkind.Permanent(err) {
		t.Fatalf("put of a key under a key: %v, want success or a permanent error", err)
	}
	if got := get(t, s, p+"k"); !bytes.Equal(got, b) {
		t.Fatal("the first object changed")
	}
	_, err = s.Get(ctx(t), p+"k/sub/deeper")
	if !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("get under an object: %v, want ErrNotFound", err)
	}
}

func testInvalidKeys(t *testing.T, s store.Store, p string) {
	for _, key := range []string{"", "/abs", p + "../x", p + "/x", p + ".hidden", p + "x\x00y", p + "x/", p + "ü", p + "x y", strings.Repeat("a", 600)} {
		if err := s.Put(ctx(t), key, store.Bytes(Random(10))); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("put %q: %v, want ErrInvalid", key, err)
		}
		if _, err := s.Get(ctx(t), key); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("get %q: %v, want ErrInvalid", key, err)
		}
	}
}

func testReplace(t *testing.T, s store.Store, p string) {
	r, ok := store.As[store.Replacer](s)
	if !ok {
		t.Skip("the store cannot replace objects")
	}
	key := p + "rep"
	put(t, s, key, Random(1000))
	old, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	nb := Random(1200)
	if err := r.Replace(ctx(t), key, old, store.Bytes(nb)); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if got := get(t, s, key); !bytes.Equal(got, nb) {
		t.Fatal("replace did not store the new bytes")
	}
	if err := r.Replace(ctx(t), key, old, store.Bytes(Random(10))); !errors.Is(err, errkind.ErrConflict) {
		t.Fatalf("replace of a copy that changed meanwhile: %v, want ErrConflict", err)
	}
	if got := get(t, s, key); !bytes.Equal(got, nb) {
		t.Fatal("a refused replace changed the object")
	}
	if err := r.Replace(ctx(t), p+"absent", store.Info{Key: p + "absent"}, store.Bytes(nb)); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("replace of a missing object: %v, want ErrNotFound", err)
	}
}

// testGetRange: every store reads a part of an object itself (a wrapper
// that forgot to pass ranges on would read whole objects to skip most).
func testGetRange(t *testing.T, s store.Store, p string) {
	if _, ok := s.(store.Ranger); !ok {
		t.Fatalf("%T does not implement store.Ranger", s)
	}
	key := p + "ranged"
	b := Random(100_000)
	put(t, s, key, b)
	for _, r := range []struct{ off, n, want int64 }{
		{0, 10, 10}, {5000, 30000, 30000}, {99_990, 10, 10}, {99_995, 100, 5}, {42, 0, 0},
	} {
		rc, err := store.GetRange(ctx(t), s, key, r.off, r.n)
		if err != nil {
			t.Fatalf("range %d+%d: %v", r.off, r.n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || int64(len(got)) != r.want || !bytes.Equal(got, b[r.off:r.off+r.want]) {
			t.Fatalf("range %d+%d: %d bytes (want %d), equal %v, err %v", r.off, r.n, len(got), r.want, bytes.Equal(got, b[r.off:r.off+r.want]), err)
		}
	}
	if _, err := store.GetRange(ctx(t), s, p+"absent", 0, 10); !errors.Is(err, errkind.ErrNotFound) {
		t.Errorf("range of an absent object: %v, want not found", err)
	}
	if _, err := store.GetRange(ctx(t), s, key, -1, 10); !errors.Is(err, errkind.ErrInvalid) {
		t.Errorf("a negative offset: %v, want invalid", err)
	}
}
