// Package filestore is an archive.Store in a local directory, typically an
// NFS mount on the storage host.
//
// Durability and write-once come from the file system's own primitives: an
// object is written to a temporary dot-file in its final directory, fsync'd,
// then published with link(2), which fails if the name exists (rename(2)
// would silently replace it), and the directory is fsync'd. A crash at any
// point leaves either no object or the whole one; leftover temporary files
// are invisible to List and removed by SweepTemp.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/walstore/walstore/archive"
)

const (
	dirPerm  = 0o750
	filePerm = 0o640
	tmpMark  = ".tmp-"
)

// Store is a directory-backed archive.Store.
type Store struct {
	root string
}

// Open returns the store rooted at dir, creating the directory if needed,
// and checks that the file system supports what the store relies on (hard
// links and fsync) by publishing and removing a probe file.
func Open(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, dirPerm); err != nil {
		return nil, fmt.Errorf("file store %s: %w", root, classify(err))
	}
	s := &Store{root: root}
	if err := s.probe(); err != nil {
		return nil, fmt.Errorf("file store %s: %w", root, err)
	}
	return s, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Describe implements archive.Describer.
func (s *Store) Describe() string { return "file://" + s.root }

func (s *Store) probe() error {
	f, err := os.CreateTemp(s.root, ".probe"+tmpMark+"*")
	if err != nil {
		return classify(err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync not supported: %w", err)
	}
	f.Close()
	link := tmp + "-link"
	if err := os.Link(tmp, link); err != nil {
		return fmt.Errorf("hard links not supported (needed for write-once publishing): %w", err)
	}
	return os.Remove(link)
}

func (s *Store) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: put %s: size %d", archive.ErrInvalid, key, size)
	}
	final := s.path(key)
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("put %s: %w", key, archive.ErrExists)
	}
	dir := filepath.Dir(final)
	f, err := s.createTemp(dir, filepath.Base(final))
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful link this only drops the temp name
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: io.LimitReader(r, size+1)})
	if err == nil && n != size {
		err = fmt.Errorf("%w: body is %d bytes, expected %d", archive.ErrInvalid, n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", key, classify(err))
	}
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put %s: %w", key, archive.ErrExists)
		}
		return fmt.Errorf("put %s: %w", key, classify(err))
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("put %s: fsync directory: %w", key, classify(err))
	}
	return nil
}

// createTemp makes a temporary file next to the final name, creating (and
// making durable) missing parent directories. A directory removed by a
// concurrent Delete between the two steps is created again.
func (s *Store) createTemp(dir, base string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		if err := s.mkdirAll(dir); err != nil {
			return nil, classify(err)
		}
		f, err := os.CreateTemp(dir, "."+base+tmpMark+"*")
		if err == nil {
			if err := f.Chmod(filePerm); err != nil {
				f.Close()
				os.Remove(f.Name())
				return nil, err
			}
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			return nil, classify(err)
		}
	}
}

// mkdirAll creates dir and its missing parents under the root, fsyncing
// each parent so that a new directory survives a crash.
func (s *Store) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir && strings.HasPrefix(parent, s.root) {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := archive.ValidKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, classify(err))
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, archive.ErrNotFound)
	}
	return f, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, key string) (archive.Info, error) {
	if err := archive.ValidKey(key); err != nil {
		return archive.Info{}, err
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return archive.Info{}, fmt.Errorf("stat %s: %w", key, classify(err))
	}
	if !fi.Mode().IsRegular() {
		return archive.Info{}, fmt.Errorf("stat %s: %w", key, archive.ErrNotFound)
	}
	return archive.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements archive.Store. The parent directory is removed too
// when it becomes empty (a deleted backup leaves no empty folder behind).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	p := s.path(key)
	fi, err := os.Lstat(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err == nil {
		err = os.Remove(p)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, classify(err))
	}
	dir := filepath.Dir(p)
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("delete %s: fsync directory: %w", key, classify(err))
	}
	if strings.Count(key, "/") > 2 && os.Remove(dir) == nil {
		_ = syncDir(filepath.Dir(dir))
	}
	return nil
}

// List implements archive.Store. Directories are walked with their entries
// sorted as they sort inside full keys (a directory "a" as "a/"), so keys
// come out in byte order without collecting them all first.
func (s *Store) List(ctx context.Context, prefix string, fn func(archive.Info) error) error {
	if err := archive.ValidPrefix(prefix); err != nil {
		return err
	}
	dirKey := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dirKey = prefix[:i+1]
	}
	err := s.walk(ctx, dirKey, prefix, fn)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *Store) walk(ctx context.Context, dirKey, prefix string, fn func(archive.Info) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(dirKey)))
	if err != nil {
		return err
	}
	type entry struct {
		sortKey string
		de      fs.DirEntry
	}
	list := make([]entry, 0, len(entries))
	for _, de := range entries {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			continue // temporary files, probes
		}
		k := dirKey + name
		if de.IsDir() {
			k += "/"
		}
		// Only descend where keys can still match the prefix.
		if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
			continue
		}
		list = append(list, entry{k, de})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].sortKey < list[j].sortKey })
	for _, e := range list {
		if e.de.IsDir() {
			if err := s.walk(ctx, e.sortKey, prefix, fn); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		if !e.de.Type().IsRegular() || !strings.HasPrefix(e.sortKey, prefix) {
			continue
		}
		fi, err := e.de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while listing
		}
		if err != nil {
			return err
		}
		if err := fn(archive.Info{Key: e.sortKey, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// SweepTemp removes temporary files older than age, left behind by
// writers that crashed mid-put. It returns how many it removed.
func (s *Store) SweepTemp(age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	removed := 0
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), ".") || !strings.Contains(d.Name(), tmpMark) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			if os.Remove(p) == nil {
				removed++
			}
		}
		return nil
	})
	return removed, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// classify maps file system errors onto archive's sentinels.
func classify(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %v", archive.ErrNotFound, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %v", archive.ErrNoSpace, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %v", archive.ErrForbidden, err)
	}
	return err
}

// ctxReader stops a copy once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
