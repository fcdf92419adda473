package push

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/flock"
	"github.com/walstore/walstore/wal"
)

// pushWithAhead is one archive_command call with push-ahead on. The file
// asked for is answered by, in order: a valid marker (pushed ahead
// earlier); the pusher finishing it (when it is uploading it right now);
// or a push in the foreground. Before that, a detached pusher is started
// if none runs, to keep uploading the rest of the .ready backlog.
func pushWithAhead(ctx context.Context, cfg Config, path string, name wal.Name) (Result, error) {
	mk := markersFor(filepath.Dir(path))
	if _, err := os.Stat(mk.status()); err != nil {
		// Not PostgreSQL's pg_wal: nothing to push ahead.
		return pushOne(ctx, cfg, path, name)
	}
	if res, ok := fromMarker(mk, name, cfg); ok {
		return res, nil
	}
	if err := os.MkdirAll(mk.dir, 0o700); err != nil {
		return pushOne(ctx, cfg, path, name)
	}
	claim, ok := flock.TryLock(mk.claim(name.String()))
	if !ok {
		// The pusher is uploading this very file: wait for it rather than
		// upload it twice.
		flock.WaitReleased(ctx, mk.claim(name.String()))
		if res, ok := fromMarker(mk, name, cfg); ok {
			return res, nil
		}
		claim, _ = flock.TryLock(mk.claim(name.String()))
	}
	defer claim.Unlock(true)
	// The pusher may have finished it between the first look and the claim.
	if res, ok := fromMarker(mk, name, cfg); ok {
		return res, nil
	}
	if cfg.Spawn != nil && !flock.Held(mk.lock()) {
		if err := cfg.Spawn(mk.walDir); err != nil {
			cfg.Log.Info("cannot start the pusher", "error", err.Error())
		}
	}
	mk.remove(name.String())  // stale: the file changed since
	var enc *envelope.Encoder // a warm one of the list (pushAndMark)
	if !cfg.Resident {
		enc = oneShotEncoder(path)
	}
	res, err := pushAndMark(ctx, cfg, mk, name, enc)
	if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("%w: %v", errkind.ErrInvalid, err)
	}
	mk.clean()
	return res, err
}

func fromMarker(mk markers, name wal.Name, cfg Config) (Result, bool) {
	rec, ok := mk.valid(name.String(), cfg)
	if !ok {
		return Result{}, false
	}
	// The marker stays until PostgreSQL has renamed .ready to .done:
	// until that moment a running pusher must still see it, and it
	// removes it when it exits (clean). With no pusher running, nothing
	// else would: this call, the last PostgreSQL makes for the file,
	// removes it.
	if !flock.Held(mk.lock()) {
		mk.remove(name.String())
		mk.clean()
	}
	res := Result{Name: name, Outcome: archive.AlreadyStored, FromMarker: true, RawSize: rec.Size}
	res.Digest, _ = envelope.ParseDigest(rec.SHA256)
	cfg.Log.Debug("pushed ahead earlier; file unchanged", "file", name.String())
	return res, true
}

// readyFiles lists the files waiting in archive_status, in the order
// PostgreSQL archives them: timeline history files first, then by timeline
// and position.
func readyFiles(statusDir string) []wal.Name {
	entries, err := os.ReadDir(statusDir)
	if err != nil {
		return nil
	}
	var names []wal.Name
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok {
			continue
		}
		if nm, err := wal.ParseName(base); err == nil {
			names = append(names, nm)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		hi, hj := names[i].Kind == wal.History, names[j].Kind == wal.History
		if hi != hj {
			return hi
		}
		return wal.Compare(names[i], names[j]) < 0
	})
	return names
}
