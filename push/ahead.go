package push

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/walstore/walstore/archive"
)

// Markers live in pg_wal/walstore/pushed/: inside pg_wal, so base backups
// (which skip pg_wal's contents) never carry them to another cluster, and
// on the same file system as the WAL they describe.
const markerDir = "walstore/pushed"

// identity is what makes "the file on disk is still the file we pushed" a
// stat away: a replaced or rewritten file changes inode, size or mtime.
type identity struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	Inode   uint64 `json:"inode"`
	Dev     uint64 `json:"dev"`
	Repo    string `json:"repo"`
	Archive string `json:"archive"`
	SHA256  string `json:"sha256,omitempty"`
}

func statIdentity(path string, cfg Config) (identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return identity{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return identity{}, fmt.Errorf("no inode for %s", path)
	}
	return identity{
		Name: filepath.Base(path), Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(),
		Inode: st.Ino, Dev: uint64(st.Dev), Repo: cfg.Repo, Archive: cfg.Archive.Name,
	}, nil
}

func sameFile(a, b identity) bool {
	a.SHA256, b.SHA256 = "", ""
	return a == b
}

type markers struct {
	dir string // pg_wal/walstore/pushed
}

func (m markers) path(name string) string { return filepath.Join(m.dir, name) }

// valid reports whether a marker vouches for the file at walPath now.
func (m markers) valid(walPath string, cfg Config) (identity, bool) {
	b, err := os.ReadFile(m.path(filepath.Base(walPath)))
	if err != nil {
		return identity{}, false
	}
	var rec identity
	if json.Unmarshal(b, &rec) != nil {
		return identity{}, false
	}
	cur, err := statIdentity(walPath, cfg)
	if err != nil || !sameFile(rec, cur) {
		return rec, false
	}
	return rec, true
}

// write records a push; written to a temp name and renamed, so a marker is
// whole or absent (a lost marker only costs a second, idempotent push).
func (m markers) write(id identity) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(id)
	tmp := m.path("." + id.Name + ".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.path(id.Name))
}

func (m markers) remove(name string) { os.Remove(m.path(name)) }

// clean removes markers whose file is no longer waiting to be archived.
func (m markers) clean(statusDir string) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(statusDir, e.Name()+".ready")); err != nil {
			os.Remove(m.path(e.Name()))
		}
	}
}

// pushWithAhead pushes path and up to Jobs-1 other .ready files at once.
func pushWithAhead(ctx context.Context, cfg Config, path string, name archive.Name) (Result, error) {
	walDir := filepath.Dir(path)
	statusDir := filepath.Join(walDir, "archive_status")
	mk := markers{dir: filepath.Join(walDir, markerDir)}
	if _, err := os.Stat(statusDir); err != nil {
		// Not called from PostgreSQL's pg_wal: nothing to push ahead.
		return pushFile(ctx, cfg, archive.NewEncoder(), path, name)
	}
	if rec, ok := mk.valid(path, cfg); ok {
		mk.remove(name.String())
		res := Result{Name: name, Outcome: archive.AlreadyStored, FromMarker: true, RawSize: rec.Size}
		res.Digest, _ = archive.ParseDigest(rec.SHA256)
		cfg.Log.Debug("pushed ahead earlier; file unchanged", "file", name.String())
		return res, nil
	}
	mk.remove(name.String()) // stale: the file changed since
	ahead := readyFiles(statusDir, name, cfg.Jobs-1, func(n string) bool {
		_, ok := mk.valid(filepath.Join(walDir, n), cfg)
		return ok
	})

	var res Result
	var mainErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		res, mainErr = pushFile(ctx, cfg, archive.NewEncoder(), path, name)
	})
	pushed := make([]bool, len(ahead))
	for i, n := range ahead {
		wg.Go(func() {
			p := filepath.Join(walDir, n.String())
			before, err := statIdentity(p, cfg)
			if err != nil {
				return // archived and removed meanwhile
			}
			r, err := pushFile(ctx, cfg, archive.NewEncoder(), p, n)
			if err != nil {
				cfg.Log.Info("push-ahead failed; PostgreSQL will ask again", "file", n.String(), "error", err.Error())
				return
			}
			// Record only if the file is still the one that was read.
			after, err := statIdentity(p, cfg)
			if err != nil || !sameFile(before, after) {
				return
			}
			after.SHA256 = r.Digest.String()
			if err := mk.write(after); err != nil {
				cfg.Log.Info("cannot write push-ahead marker", "file", n.String(), "error", err.Error())
				return
			}
			pushed[i] = true
		})
	}
	wg.Wait()
	for _, ok := range pushed {
		if ok {
			res.Ahead++
		}
	}
	mk.clean(statusDir)
	return res, mainErr
}

// readyFiles lists up to n files waiting in statusDir, other than self and
// those skip accepts, in the order PostgreSQL archives them: timeline
// history files first, then by timeline and position.
func readyFiles(statusDir string, self archive.Name, n int, skip func(string) bool) []archive.Name {
	if n <= 0 {
		return nil
	}
	entries, err := os.ReadDir(statusDir)
	if err != nil {
		return nil
	}
	var names []archive.Name
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok {
			continue
		}
		nm, err := archive.ParseName(base)
		if err != nil || nm == self || skip(base) {
			continue
		}
		names = append(names, nm)
	}
	sort.Slice(names, func(i, j int) bool {
		hi, hj := names[i].Kind == archive.History, names[j].Kind == archive.History
		if hi != hj {
			return hi
		}
		return archive.Compare(names[i], names[j]) < 0
	})
	if len(names) > n {
		names = names[:n]
	}
	return names
}
