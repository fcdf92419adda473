package lazystore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/lazystore"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/storetest"
)

// Once open, the lazy store is the store it opened.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		l := lazystore.New("mem", func(context.Context) (store.Store, error) { return memstore.New(), nil }, errors.New("down at start"), 5*time.Millisecond)
		deadline := time.Now().Add(10 * time.Second)
		for l.Unwrap() == nil && time.Now().Before(deadline) {
			l.Stat(context.Background(), "x/y") // triggers the background open
			time.Sleep(10 * time.Millisecond)
		}
		return l
	}, storetest.Options{Short: true})
}

// Until the store opens, every call fails at once, and opening is tried
// in the background at most every few seconds.
func TestFailsFastUntilOpen(t *testing.T) {
	var tries atomic.Int32
	l := lazystore.New("down", func(context.Context) (store.Store, error) {
		tries.Add(1)
		return nil, errors.New("connection refused")
	}, errors.New("connection refused"), 0)
	start := time.Now()
	for range 50 {
		if _, err := l.Stat(context.Background(), "a/b"); err == nil {
			t.Fatal("a store that is down answered")
		}
	}
	if time.Since(start) > time.Second || tries.Load() > 1 {
		t.Fatalf("50 calls took %v and %d attempts to open", time.Since(start), tries.Load())
	}
}
