package push

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/flock"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/wal"
)

// PusherIdle is how long the pusher lives once the backlog is empty.
const PusherIdle = 3 * time.Second

// retryFailedAfter is how long the pusher leaves a file alone after a
// failed upload; PostgreSQL's own call reports the error meanwhile.
const retryFailedAfter = 10 * time.Second

// RunPusher is the body of the detached pusher process for one pg_wal. It
// holds the pusher lock (a second one exits at once) and keeps Jobs-1
// uploads of .ready files in flight, oldest first, each under its claim so
// that no file is uploaded twice at once (worker.Loop). A stored file gets
// a marker if it did not change while being read. It exits once the
// backlog has been empty for PusherIdle, when its PostgreSQL is gone, or
// when every upload failed for a minute. PostgreSQL never waits for it.
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
	pgdata := filepath.Dir(walDir)
	stop := worker.Loop{
		Workers: max(1, cfg.Jobs-1),
		Next: func() ([]worker.Item, bool) {
			var items []worker.Item
			for _, n := range readyFiles(mk.status()) {
				items = append(items, n.String())
			}
			return items, false
		},
		Done: func(it worker.Item) bool {
			_, ok := mk.valid(it, cfg)
			return ok
		},
		Claim: func(it worker.Item) (func(), bool) {
			claim, ok := flock.TryLock(mk.claim(it))
			if !ok {
				return nil, false // PostgreSQL's own call is pushing it
			}
			return func() { claim.Unlock(true) }, true
		},
		Work: func(ctx context.Context, it worker.Item) (bool, error) {
			n, err := wal.ParseName(it)
			if err != nil {
				return false, err
			}
			return pushAhead(ctx, cfg, mk, n)
		},
		Alive:      func() bool { return worker.PostmasterAlive(pgdata) },
		Idle:       PusherIdle,
		RetryAfter: retryFailedAfter,
	}.Run(ctx)
	cfg.Log.Debug("pusher stopped", "why", stop.String())
	mk.clean()
	return nil
}

// pushAhead uploads one file for the pusher; it reports whether a file
// was stored (a file archived and removed meanwhile is no failure).
func pushAhead(ctx context.Context, cfg Config, mk markers, n wal.Name) (bool, error) {
	fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	_, err := pushAndMark(fctx, cfg, mk, n, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		cfg.Log.Info("push-ahead failed; PostgreSQL will ask again", "file", n.String(), "error", err.Error())
		return false, err
	}
	return true, nil
}

// pushAndMark uploads one file of pg_wal and, while it still waits to be
// archived, records a marker for it: whoever pushed it (the pusher or
// PostgreSQL's own call), nobody uploads it again. A file that changed
// while being read gets no marker; PostgreSQL's call then pushes it again.
//
// enc, when not nil, encodes the file (a one-shot call's); else an encoder
// of the list, given back after a successful push.
func pushAndMark(ctx context.Context, cfg Config, mk markers, n wal.Name, enc *envelope.Encoder) (Result, error) {
	p := filepath.Join(mk.walDir, n.String())
	before, err := statIdentity(p, cfg)
	if err != nil {
		return Result{}, err // archived and removed meanwhile
	}
	listed := enc == nil
	if listed {
		enc = encoders.Get()
	}
	res, err := pushFile(ctx, cfg, enc, p, n)
	if err != nil {
		return res, err // the encoder is dropped: its buffer may still be read
	}
	if listed && res.Outcome.BodyDone() {
		encoders.Put(enc) // else the request may still be reading its buffer
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

// encoders keeps the pusher's encoders, with their zstd state and output
// buffer, from one segment to the next: made fresh for each segment, they
// cost some 2500 page faults, more CPU than their SHA-256s.
var encoders = envelope.NewEncoderList(8, envelope.NewEncoder)
