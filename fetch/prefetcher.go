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

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/flock"
)

// PrefetchIdle is how long the prefetcher lives without a new request
// from walfetch and with nothing left to fetch.
const PrefetchIdle = 3 * time.Second

// notFoundBackoff is how long a segment the archive does not have yet is
// left alone (a standby asks for it again and again).
const notFoundBackoff = 500 * time.Millisecond

// RunPrefetcher is the body of the detached prefetcher process. It holds
// the spool lock (a second prefetcher exits at once) and keeps the
// Prefetch segments after the last one served in the spool: as many
// fetches in flight as there are cores, nearest segment first, each under
// its claim so walfetch can wait for it instead of fetching it twice. It
// exits once idle. PostgreSQL never waits for it.
func RunPrefetcher(ctx context.Context, cfg Config, spoolDir string) error {
	cfg.defaults()
	s := &spool{dir: spoolDir}
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return err
	}
	lock, ok := flock.TryLock(s.lockPath())
	if !ok {
		return nil
	}
	defer lock.Unlock(false)
	s.removeTemps()
	workers := max(2, runtime.NumCPU())
	var (
		mu       sync.Mutex
		inflight = map[archive.Name]bool{}
		missing  = map[archive.Name]time.Time{}
		gained   bool // a segment reached the spool since the last look
		wg       sync.WaitGroup
	)
	done := make(chan struct{}, workers)
	var lastWant time.Time
	idleSince := time.Now()
	for ctx.Err() == nil {
		w, served, ok := s.readWant()
		if !ok {
			break
		}
		if !w.At.Equal(lastWant) {
			lastWant, idleSince = w.At, time.Now()
		}
		// Every pass, not only on a new request: a fetch that finished
		// just after walfetch moved on (a timeline switch) is dropped here.
		s.prune(served)
		have := map[archive.Name]bool{}
		for _, e := range s.entries() {
			have[e.name] = true
		}
		mu.Lock()
		busy := len(inflight)
		mu.Unlock()
		next := served
		for range cfg.Prefetch {
			next = next.Next(w.SegSize)
			if busy >= workers {
				break
			}
			mu.Lock()
			skip := have[next] || inflight[next] || time.Since(missing[next]) < notFoundBackoff
			mu.Unlock()
			if skip {
				continue
			}
			claim, ok := flock.TryLock(s.claimPath(next))
			if !ok {
				continue
			}
			n := next
			mu.Lock()
			inflight[n] = true
			mu.Unlock()
			busy++
			wg.Go(func() {
				defer func() { done <- struct{}{} }()
				defer claim.Unlock(true)
				found := prefetchOne(ctx, cfg, s, n)
				mu.Lock()
				delete(inflight, n)
				if found {
					gained = true
				} else {
					missing[n] = time.Now()
				}
				mu.Unlock()
			})
		}
		// Idle means no new request from walfetch and nothing gained:
		// asking again and again for segments the archive does not have
		// yet (a standby at the end of the WAL) is not work.
		mu.Lock()
		if gained {
			gained, idleSince = false, time.Now()
		}
		mu.Unlock()
		if busy == 0 && time.Since(idleSince) > PrefetchIdle {
			break
		}
		select {
		case <-done:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	wg.Wait()
	// A server out of recovery will never ask again: leave nothing behind.
	pgdata := filepath.Dir(filepath.Dir(filepath.Dir(spoolDir)))
	if DetectMode(pgdata) == NoRecovery {
		s.clear()
	}
	return nil
}

// prefetchOne fetches n into the spool; it reports false when the archive
// does not have n (yet) or the fetch failed.
func prefetchOne(ctx context.Context, cfg Config, s *spool, n archive.Name) bool {
	fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	a, err := cfg.Open(fctx)
	if err != nil {
		cfg.Log.Info("prefetch: cannot open the repository", "error", err.Error())
		return false
	}
	tmp := filepath.Join(s.dir, "."+n.String()+".fetched")
	sum := crc32.New(castagnoli)
	if _, err := fetchTo(fctx, a, n, tmp, 0, sum); err != nil {
		if !errors.Is(err, archive.ErrNotFound) {
			cfg.Log.Info("prefetch failed", "file", n.String(), "error", err.Error())
		}
		return false
	}
	// Publish only what can still be asked for: walfetch may have moved to
	// another timeline or past n while this fetch ran.
	if _, served, ok := s.readWant(); !ok || served.TLI != n.TLI || archive.Compare(n, served) <= 0 {
		os.Remove(tmp)
		return false
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, fmt.Sprintf("%s.%08x", n, sum.Sum32()))); err != nil {
		os.Remove(tmp)
		return false
	}
	return true
}
