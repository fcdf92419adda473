package worker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/client/worker"
)

type fake struct {
	mu     sync.Mutex
	items  []string
	done   map[string]bool
	claims map[string]bool
	work   func(string) (bool, error)
	calls  atomic.Int32
}

func (f *fake) loop() worker.Loop {
	return worker.Loop{
		Workers: 2,
		Next: func() ([]string, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]string(nil), f.items...), false
		},
		Done: func(it string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.done[it] },
		Claim: func(it string) (func(), bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.claims[it] {
				return nil, false
			}
			f.claims[it] = true
			return func() { f.mu.Lock(); delete(f.claims, it); f.mu.Unlock() }, true
		},
		Work: func(_ context.Context, it string) (bool, error) {
			f.calls.Add(1)
			g, err := f.work(it)
			if err == nil {
				f.mu.Lock()
				f.done[it] = true
				f.mu.Unlock()
			}
			return g, err
		},
		Idle: 200 * time.Millisecond, Poll: 5 * time.Millisecond, RetryAfter: 50 * time.Millisecond, FailFor: 300 * time.Millisecond,
	}
}

func newFake(items ...string) *fake {
	return &fake{items: items, done: map[string]bool{}, claims: map[string]bool{}, work: func(string) (bool, error) { return true, nil }}
}

// Every item is worked on once, then the loop exits when idle.
func TestWorksEachOnceThenIdles(t *testing.T) {
	f := newFake("a", "b", "c", "d")
	if stop := f.loop().Run(context.Background()); stop != worker.StopIdle {
		t.Fatalf("stopped: %v", stop)
	}
	if f.calls.Load() != 4 {
		t.Fatalf("%d calls for 4 items", f.calls.Load())
	}
}

// An item someone else claimed is left to them.
func TestClaimedItemsAreLeftAlone(t *testing.T) {
	f := newFake("a", "b")
	f.claims["a"] = true
	f.loop().Run(context.Background())
	if f.done["a"] || !f.done["b"] {
		t.Fatalf("done: %v", f.done)
	}
}

// When every attempt fails (the store went away), the loop gives up.
func TestGivesUpWhenEverythingFails(t *testing.T) {
	f := newFake("a")
	f.work = func(string) (bool, error) { return false, errors.New("connection refused") }
	l := f.loop()
	l.Idle = time.Hour // only the failures can stop it
	start := time.Now()
	if stop := l.Run(context.Background()); stop != worker.StopFailing || time.Since(start) > 5*time.Second {
		t.Fatalf("stopped: %v after %v", stop, time.Since(start))
	}
}

// When its PostgreSQL is gone, the loop exits at once.
func TestExitsWhenPostgresIsGone(t *testing.T) {
	f := newFake("a")
	f.work = func(string) (bool, error) { return false, errors.New("down") }
	l := f.loop()
	l.Idle, l.FailFor = time.Hour, time.Hour
	l.Alive = func() bool { return worker.PostmasterAlive(t.TempDir()) }
	start := time.Now()
	if stop := l.Run(context.Background()); stop != worker.StopGone || time.Since(start) > 5*time.Second {
		t.Fatalf("stopped: %v after %v", stop, time.Since(start))
	}
}

// An item in flight when PostgreSQL goes away is cancelled, not awaited:
// a command PostgreSQL ran may be waiting on its claim.
func TestCancelsWorkWhenPostgresIsGone(t *testing.T) {
	f := newFake("a")
	l := f.loop()
	l.Idle, l.FailFor = time.Hour, time.Hour
	started := make(chan struct{})
	var alive atomic.Bool
	alive.Store(true)
	l.Work = func(ctx context.Context, _ string) (bool, error) {
		close(started)
		<-ctx.Done()
		return false, ctx.Err()
	}
	l.Alive = alive.Load
	go func() { <-started; alive.Store(false) }()
	stopped := make(chan worker.Stop)
	go func() { stopped <- l.Run(context.Background()) }()
	select {
	case stop := <-stopped:
		if stop != worker.StopGone {
			t.Fatalf("stopped: %v", stop)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the loop waited for the item in flight after its PostgreSQL was gone")
	}
}
