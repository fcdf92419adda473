// Package worker is the one loop of walstore's detached helpers: the
// push-ahead pusher (walpush) and the prefetcher (walfetch). Each is a
// process of its own, started by the command PostgreSQL ran and never
// waited for; the loop keeps a few items in flight, each under a claim so
// that the command itself can wait for an item instead of doing it twice,
// leaves a failed item alone for a while, and exits on its own:
//
//   - when it was idle (no progress, nothing in flight) for Idle;
//   - when its PostgreSQL is gone (postmaster.pid names no live process):
//     nobody will ever ask for its work, so the items in flight are
//     cancelled too (a command PostgreSQL ran may be waiting on one of
//     their claims, and an orphaned PostgreSQL child keeps the server
//     from restarting until that command exits);
//   - when every attempt failed for FailFor (the store is gone): the
//     command PostgreSQL runs reports the failure, the helper need not
//     keep trying in the background.
package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Item is one unit of work (a WAL file name).
type Item = string

// ErrNotYet is what Work returns for an item that cannot be done yet (a
// segment not archived yet): it is left alone for RetryAfter like a
// failure, but it is no failure.
var ErrNotYet = errors.New("not yet")

// Loop is the helper's configuration; Run runs it.
type Loop struct {
	// Workers is how many items are worked on at once.
	Workers int
	// Next returns the items worth working on now, most urgent first, and
	// whether new demand arrived since the last call (which counts as
	// progress: the helper is wanted).
	Next func() (items []Item, demand bool)
	// Done reports an item that needs no work (already done).
	Done func(Item) bool
	// Claim takes an item's claim so that nobody else works on it; ok is
	// false if someone holds it.
	Claim func(Item) (release func(), ok bool)
	// Work does the item. gained reports progress (a file stored or
	// fetched); an error means it failed (or ErrNotYet), and it is left
	// alone for RetryAfter.
	Work func(ctx context.Context, it Item) (gained bool, err error)
	// Alive reports whether the helper's PostgreSQL still runs (nil:
	// always).
	Alive func() bool
	// Idle, Poll, RetryAfter and FailFor: see the package doc (defaults
	// 3 s, 50 ms, 10 s, 60 s).
	Idle, Poll, RetryAfter, FailFor time.Duration
}

// Why the loop stopped.
type Stop int

const (
	StopIdle Stop = iota + 1
	StopGone
	StopFailing
	StopCancelled
)

func (s Stop) String() string {
	switch s {
	case StopIdle:
		return "idle"
	case StopGone:
		return "its PostgreSQL is gone"
	case StopFailing:
		return "every attempt failed"
	case StopCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Run works until one of the stop conditions holds, then waits for the
// items in flight and returns why it stopped.
func (l Loop) Run(ctx context.Context) Stop {
	if l.Workers < 1 {
		l.Workers = 1
	}
	if l.Idle <= 0 {
		l.Idle = 3 * time.Second
	}
	if l.Poll <= 0 {
		l.Poll = 50 * time.Millisecond
	}
	if l.RetryAfter <= 0 {
		l.RetryAfter = 10 * time.Second
	}
	if l.FailFor <= 0 {
		l.FailFor = time.Minute
	}
	var (
		mu          sync.Mutex
		inflight    = map[Item]bool{}
		failed      = map[Item]time.Time{}
		gained      bool
		lastSuccess = time.Now()
		failing     bool // every attempt since lastSuccess failed
		wg          sync.WaitGroup
	)
	done := make(chan struct{}, l.Workers)
	workCtx, cancelWork := context.WithCancel(ctx)
	defer cancelWork()
	idleSince := time.Now()
	lastAlive := time.Now()
	stop := StopCancelled
	for ctx.Err() == nil {
		if l.Alive != nil && time.Since(lastAlive) > time.Second {
			if !l.Alive() {
				stop = StopGone
				cancelWork()
				break
			}
			lastAlive = time.Now()
		}
		items, demand := l.Next()
		if demand {
			idleSince = time.Now()
		}
		mu.Lock()
		busy := len(inflight)
		for it, at := range failed {
			if time.Since(at) > l.RetryAfter {
				delete(failed, it)
			}
		}
		mu.Unlock()
		for _, it := range items {
			if busy >= l.Workers {
				break
			}
			mu.Lock()
			_, recentlyFailed := failed[it]
			skip := inflight[it] || recentlyFailed
			mu.Unlock()
			if skip || l.Done(it) {
				continue
			}
			release, ok := l.Claim(it)
			if !ok {
				continue // the command itself is on it
			}
			if l.Done(it) { // finished by the claim's previous holder
				release()
				continue
			}
			mu.Lock()
			inflight[it] = true
			mu.Unlock()
			busy++
			wg.Go(func() {
				defer func() { done <- struct{}{} }()
				defer release()
				g, err := l.Work(workCtx, it)
				mu.Lock()
				defer mu.Unlock()
				delete(inflight, it)
				switch {
				case errors.Is(err, ErrNotYet):
					failed[it] = time.Now()
				case err != nil:
					failed[it] = time.Now()
					failing = true
				default:
					failing = false
					lastSuccess = time.Now()
					if g {
						gained = true
					}
				}
			})
		}
		mu.Lock()
		if gained {
			gained, idleSince = false, time.Now()
		}
		stillFailing := failing && time.Since(lastSuccess) > l.FailFor
		mu.Unlock()
		if stillFailing {
			stop = StopFailing
			break
		}
		if busy == 0 && time.Since(idleSince) > l.Idle {
			stop = StopIdle
			break
		}
		select {
		case <-done:
		case <-time.After(l.Poll):
		case <-ctx.Done():
		}
	}
	wg.Wait()
	return stop
}

// PostmasterAlive reports whether the PostgreSQL server of pgdata runs:
// its postmaster.pid names a live process. A missing or unreadable file
// means it does not.
func PostmasterAlive(pgdata string) bool {
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// StateDir is where walstore's helpers keep what they know about the
// cluster in pgdata (the prefetch spool, push-ahead markers, the
// repository cache): next to the data directory, in
// "<parent>/.<name>.walstore", so that pg_rewind and pg_basebackup, which
// walk the data directory, never meet a file a helper is changing. When
// that directory cannot be made (a parent the cluster's user may not
// write), it is pg_wal/walstore inside the data directory, where base
// backups do not look but pg_rewind does: then the helpers stop the
// moment their PostgreSQL is gone.
func StateDir(pgdata string) string {
	abs, err := filepath.Abs(pgdata)
	if err != nil {
		abs = pgdata
	}
	abs = filepath.Clean(abs)
	outside := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".walstore")
	if fi, err := os.Stat(outside); err == nil && fi.IsDir() {
		return outside
	}
	if syscall.Access(filepath.Dir(abs), 2 /* W_OK */) == nil {
		return outside
	}
	return filepath.Join(abs, "pg_wal", "walstore")
}
