package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/flock"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/wal"
)

// PrefetchIdle is how long the prefetcher lives without a new request
// from walfetch and with nothing left to fetch.
const PrefetchIdle = 3 * time.Second

// notFoundBackoff is how long a segment the archive does not have yet is
// left alone (a standby asks for it again and again).
const notFoundBackoff = time.Second

// RunPrefetcher is the body of the detached prefetcher process. It holds
// the spool lock (a second prefetcher exits at once) and keeps the
// Prefetch segments after the last one served in the spool: as many
// fetches in flight as there are cores, nearest segment first, each under
// its claim so walfetch can wait for it instead of fetching it twice
// (worker.Loop). Past the end of the archive it asks only for the next
// segment, once a second. It exits once idle, when its PostgreSQL is
// gone, or when every fetch failed for a minute. PostgreSQL never waits
// for it.
func RunPrefetcher(ctx context.Context, cfg Config, spoolDir, pgdata string) error {
	cfg.defaults()
	s := &spool{dir: spoolDir, pgdata: pgdata}
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return err
	}
	lock, ok := flock.TryLock(s.lockPath())
	if !ok {
		return nil
	}
	defer lock.Unlock(false)
	s.removeTemps()
	var (
		mu       sync.Mutex
		missing  = map[wal.Name]time.Time{}
		lastWant time.Time
	)
	stop := worker.Loop{
		Workers: max(2, runtime.NumCPU()),
		Next: func() ([]worker.Item, bool) {
			w, served, ok := s.readWant()
			if !ok {
				return nil, false
			}
			demand := !w.At.Equal(lastWant)
			lastWant = w.At
			// Every pass, not only on a new request: a fetch that finished
			// just after walfetch moved on (a timeline switch) is dropped.
			s.prune(served)
			var items []worker.Item
			next := served
			mu.Lock()
			defer mu.Unlock()
			for range cfg.Prefetch {
				next = next.Next(w.SegSize)
				items = append(items, next.String())
				if t, ok := missing[next]; ok && time.Since(t) < notFoundBackoff {
					break // past the end of the archive: nothing further yet
				}
			}
			return items, demand
		},
		Done: func(it worker.Item) bool {
			n, _ := wal.ParseName(it)
			return s.has(n)
		},
		Claim: func(it worker.Item) (func(), bool) {
			n, _ := wal.ParseName(it)
			claim, ok := flock.TryLock(s.claimPath(n))
			if !ok {
				return nil, false
			}
			return func() { claim.Unlock(true) }, true
		},
		Work: func(ctx context.Context, it worker.Item) (bool, error) {
			n, _ := wal.ParseName(it)
			err := prefetchOne(ctx, cfg, s, n)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, worker.ErrNotYet) {
				missing[n] = time.Now()
			} else {
				delete(missing, n)
			}
			return err == nil, err
		},
		Alive:      func() bool { return worker.PostmasterAlive(pgdata) },
		Idle:       PrefetchIdle,
		Poll:       20 * time.Millisecond,
		RetryAfter: notFoundBackoff,
	}.Run(ctx)
	cfg.Log.Debug("prefetcher stopped", "why", stop.String())
	// A server out of recovery will never ask again: leave nothing behind.
	// (Once its PostgreSQL is gone, nothing is touched any more: what is
	// left is checked before use, and cleared then.)
	if stop != worker.StopGone && DetectMode(pgdata) == NoRecovery {
		s.clear()
	}
	return nil
}

// prefetchOne fetches n into the spool: worker.ErrNotYet when the archive
// does not have n (yet), another error when the fetch failed.
func prefetchOne(ctx context.Context, cfg Config, s *spool, n wal.Name) error {
	fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	a, err := cfg.Open(fctx)
	if err != nil {
		cfg.Log.Info("prefetch: cannot open the repository", "error", err.Error())
		return err
	}
	tmp := filepath.Join(s.dir, "."+n.String()+".fetched")
	sum := crc32.New(castagnoli)
	if _, err := fetchTo(fctx, a, n, tmp, 0, sum); err != nil {
		if errors.Is(err, errkind.ErrNotFound) {
			return worker.ErrNotYet
		}
		cfg.Log.Info("prefetch failed", "file", n.String(), "error", err.Error())
		return err
	}
	// Publish only what can still be asked for: walfetch may have moved to
	// another timeline or past n while this fetch ran, or PostgreSQL may
	// be gone.
	if _, served, ok := s.readWant(); !ok || served.TLI != n.TLI || wal.Compare(n, served) <= 0 || !worker.PostmasterAlive(s.pgdata) {
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, fmt.Sprintf("%s.%08x", n, sum.Sum32()))); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
