package push

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/walstore/walstore/client/worker"
)

// Push-ahead state lives in the pushed/ directory of the cluster's state
// directory (worker.StateDir: next to the data directory, outside it, so
// that base backups never carry it to another cluster and pg_rewind never
// meets a file the pusher is changing).
//
//	<name>          marker: <name> was stored, and this is the file that was
//	.<name>.claim   flock held by whoever is uploading <name> right now
//	.lock           flock held by the running pusher
const markerDir = "pushed"

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
		Inode: st.Ino, Dev: uint64(st.Dev), Repo: cfg.Repo, Archive: cfg.ArchiveName,
	}, nil
}

func sameFile(a, b identity) bool {
	a.SHA256, b.SHA256 = "", ""
	return a == b
}

// markers is the push-ahead directory of one pg_wal.
type markers struct {
	walDir string
	dir    string
}

func markersFor(walDir string) markers {
	return markers{walDir: walDir, dir: filepath.Join(worker.StateDir(filepath.Dir(walDir)), markerDir)}
}

func (m markers) path(name string) string  { return filepath.Join(m.dir, name) }
func (m markers) claim(name string) string { return filepath.Join(m.dir, "."+name+".claim") }
func (m markers) lock() string             { return filepath.Join(m.dir, ".lock") }
func (m markers) status() string           { return filepath.Join(m.walDir, "archive_status") }

// valid reports whether a marker vouches for the WAL file name as it is on
// disk now.
func (m markers) valid(name string, cfg Config) (identity, bool) {
	b, err := os.ReadFile(m.path(name))
	if err != nil {
		return identity{}, false
	}
	var rec identity
	if json.Unmarshal(b, &rec) != nil {
		return identity{}, false
	}
	cur, err := statIdentity(filepath.Join(m.walDir, name), cfg)
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
func (m markers) clean() {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			continue
		}
		if _, err := os.Stat(filepath.Join(m.status(), e.Name()+".ready")); err != nil {
			os.Remove(m.path(e.Name()))
		}
	}
}
