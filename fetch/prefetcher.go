package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
)

// PrefetchIdle is how long the prefetcher lives without a new request
// from walfetch and with nothing left to fetch.
const PrefetchIdle = 3 * time.Second

// RunPrefetcher is the body of the detached prefetcher process. It holds
// the spool lock (a second prefetcher exits at once), keeps the Prefetch
// segments after the last one served in the spool, fetching them in
// parallel, and exits once idle. PostgreSQL never waits for it.
func RunPrefetcher(ctx context.Context, cfg Config, spoolDir string) error {
	cfg.defaults()
	s := &spool{dir: spoolDir}
	unlock, ok := s.lock()
	if !ok {
		return nil
	}
	defer unlock()
	s.removeTemps()
	var lastWant time.Time
	idleSince := time.Now()
	for ctx.Err() == nil {
		w, served, ok := s.readWant()
		if !ok {
			return nil
		}
		if !w.At.Equal(lastWant) {
			lastWant, idleSince = w.At, time.Now()
			s.prune(served)
		}
		if fetchWindow(ctx, cfg, s, served, w.SegSize) > 0 {
			idleSince = time.Now()
		}
		if time.Since(idleSince) > PrefetchIdle {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	// A server out of recovery will never ask again: leave nothing behind.
	pgdata := filepath.Dir(filepath.Dir(filepath.Dir(spoolDir)))
	if DetectMode(pgdata) == NoRecovery {
		s.clear()
	}
	return nil
}

// fetchWindow fetches the missing segments among the Prefetch after
// served, in parallel, and returns how many it added.
func fetchWindow(ctx context.Context, cfg Config, s *spool, served archive.Name, segSize int64) int {
	have := map[archive.Name]bool{}
	for _, e := range s.entries() {
		have[e.name] = true
	}
	var todo []archive.Name
	next := served
	for range cfg.Prefetch {
		next = next.Next(segSize)
		if !have[next] {
			todo = append(todo, next)
		}
	}
	var mu sync.Mutex
	added := 0
	var wg sync.WaitGroup
	for _, n := range todo {
		wg.Go(func() {
			fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			tmp := filepath.Join(s.dir, "."+n.String()+".fetched")
			hdr, err := fetchTo(fctx, cfg.Archive, n, tmp, 0, true)
			if err != nil {
				if !errors.Is(err, archive.ErrNotFound) {
					cfg.Log.Info("prefetch failed", "file", n.String(), "error", err.Error())
				}
				return
			}
			if err := os.Rename(tmp, filepath.Join(s.dir, n.String()+"."+hdr.Digest.String())); err != nil {
				os.Remove(tmp)
				return
			}
			mu.Lock()
			added++
			mu.Unlock()
		})
	}
	wg.Wait()
	return added
}
