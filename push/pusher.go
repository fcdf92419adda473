package push

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/flock"
)

// PusherIdle is how long the pusher lives once the backlog is empty.
const PusherIdle = 3 * time.Second

// retryFailedAfter is how long the pusher leaves a file alone after a
// failed upload; PostgreSQL's own call reports the error meanwhile.
const retryFailedAfter = 10 * time.Second

// RunPusher is the body of the detached pusher process for one pg_wal. It
// holds the pusher lock (a second one exits at once) and keeps Jobs-1
// uploads of .ready files in flight, oldest first, each under its claim so
// that no file is uploaded twice at once. A stored file gets a marker if it
// did not change while being read. It exits once the backlog has been
// empty for PusherIdle. PostgreSQL never waits for it.
func RunPusher(ctx context.Context, cfg Config, walDir string) error {
	cfg.defaults()
	mk := markersFor(walDir)
	lock, ok := flock.TryLock(mk.lock())
	if !ok {
		return nil
	}
	defer lock.Unlock(false)
	workers := max(1, cfg.Jobs-1)
	var (
		mu       sync.Mutex
		inflight = map[archive.Name]bool{}
		failed   = map[archive.Name]time.Time{}
		wg       sync.WaitGroup
	)
	done := make(chan struct{}, workers)
	idleSince := time.Now()
	for ctx.Err() == nil {
		started := 0
		mu.Lock()
		busy := len(inflight)
		mu.Unlock()
		for _, n := range readyFiles(mk.status()) {
			if busy >= workers {
				break
			}
			mu.Lock()
			skip := inflight[n] || time.Since(failed[n]) < retryFailedAfter
			mu.Unlock()
			if skip {
				continue
			}
			if _, ok := mk.valid(n.String(), cfg); ok {
				continue
			}
			claim, ok := flock.TryLock(mk.claim(n.String()))
			if !ok {
				continue // PostgreSQL's own call is pushing it
			}
			mu.Lock()
			inflight[n] = true
			mu.Unlock()
			busy++
			started++
			wg.Go(func() {
				defer func() { done <- struct{}{} }()
				defer claim.Unlock(true)
				ok := pushAhead(ctx, cfg, mk, n)
				mu.Lock()
				delete(inflight, n)
				if !ok {
					failed[n] = time.Now()
				}
				mu.Unlock()
			})
		}
		if busy > 0 || started > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > PusherIdle {
			break
		}
		select {
		case <-done:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	wg.Wait()
	mk.clean()
	return nil
}

// pushAhead uploads one file and records its marker.
func pushAhead(ctx context.Context, cfg Config, mk markers, n archive.Name) bool {
	p := filepath.Join(mk.walDir, n.String())
	before, err := statIdentity(p, cfg)
	if err != nil {
		return true // archived and removed meanwhile
	}
	fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r, err := pushFile(fctx, cfg, archive.NewEncoder(), p, n)
	if err != nil {
		cfg.Log.Info("push-ahead failed; PostgreSQL will ask again", "file", n.String(), "error", err.Error())
		return false
	}
	// Vouch only for the file that was read: one that changed since is
	// pushed again by PostgreSQL's call.
	after, err := statIdentity(p, cfg)
	if err != nil || !sameFile(before, after) {
		return true
	}
	after.SHA256 = r.Digest.String()
	if _, err := os.Stat(filepath.Join(mk.status(), n.String()+".ready")); err != nil {
		return true // already archived by PostgreSQL's own call
	}
	if err := mk.write(after); err != nil {
		cfg.Log.Info("cannot write push-ahead marker", "file", n.String(), "error", err.Error())
	}
	return true
}
