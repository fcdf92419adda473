package push

import (
	"context"
	"errors"
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
	if err := os.MkdirAll(mk.dir, 0o700); err != nil {
		return err
	}
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
		pushed   bool // a file was stored since the last look
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
			if _, ok := mk.valid(n.String(), cfg); ok {
				claim.Unlock(true) // pushed by the claim's previous holder
				continue
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
				if ok {
					pushed = true
				} else {
					failed[n] = time.Now()
				}
				mu.Unlock()
			})
		}
		// Idle means nothing stored lately: a file that keeps failing is
		// PostgreSQL's own call's business, not a reason to linger.
		mu.Lock()
		if pushed {
			pushed, idleSince = false, time.Now()
		}
		mu.Unlock()
		if busy == 0 && time.Since(idleSince) > PusherIdle {
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

// pushAhead uploads one file for the pusher; false means it failed.
func pushAhead(ctx context.Context, cfg Config, mk markers, n archive.Name) bool {
	fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	_, err := pushAndMark(fctx, cfg, mk, n)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		cfg.Log.Info("push-ahead failed; PostgreSQL will ask again", "file", n.String(), "error", err.Error())
		return false
	}
	return true
}

// pushAndMark uploads one file of pg_wal and, while it still waits to be
// archived, records a marker for it: whoever pushed it (the pusher or
// PostgreSQL's own call), nobody uploads it again. A file that changed
// while being read gets no marker; PostgreSQL's call then pushes it again.
func pushAndMark(ctx context.Context, cfg Config, mk markers, n archive.Name) (Result, error) {
	p := filepath.Join(mk.walDir, n.String())
	before, err := statIdentity(p, cfg)
	if err != nil {
		return Result{}, err // archived and removed meanwhile
	}
	res, err := pushFile(ctx, cfg, archive.NewEncoder(), p, n)
	if err != nil {
		return res, err
	}
	after, err := statIdentity(p, cfg)
	if err != nil || !sameFile(before, after) {
		return res, nil
	}
	after.SHA256 = res.Digest.String()
	if _, err := os.Stat(filepath.Join(mk.status(), n.String()+".ready")); err != nil {
		return res, nil // already archived
	}
	if err := mk.write(after); err != nil {
		cfg.Log.Info("cannot write push-ahead marker", "file", n.String(), "error", err.Error())
	}
	return res, nil
}
