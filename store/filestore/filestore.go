// Package filestore is a store.Store in a local directory, typically an
// NFS mount on the storage host.
//
// Durability and write-once come from the file system's own primitives: an
// object is written to a temporary dot-file in its final directory, fsync'd,
// then published with link(2), which fails if the name exists (rename(2)
// would silently replace it), and the directory is fsync'd. A crash at any
// point leaves either no object or the whole one; leftover temporary files
// are invisible to List and removed by SweepTemp (walstored serve runs it
// at start). Directories a failed put created, and directories a delete
// empties, are removed again, so nothing a client sends leaves clutter.
//
// The store never creates its root (unless told to, for walstored's
// embedded default): a mount point that is not mounted must not silently
// become a local repository. Opened read-only, it writes nothing at all,
// so a reader needs only read permission.
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walstore/walstore/base/durable"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

const (
	dirPerm  = 0o750
	filePerm = 0o640
	tmpMark  = ".tmp-"
)

// Options say how to open the directory.
type Options struct {
	// ReadOnly: never write, not even a probe (walfetch, verify, list).
	ReadOnly bool
	// Create the root directory if it is missing (walstored serve on its
	// embedded default, walstored init). Otherwise a missing root is an
	// error: an NFS share that is not mounted must not become a local
	// directory.
	Create bool
}

// Store is a directory-backed store.Store.
type Store struct {
	root     string
	readOnly bool
	host     string
	locks    sync.Map // key → *sync.Mutex, for Replace
}

// Open returns the store rooted at dir. Opened for writing, it checks that
// the file system supports what the store relies on (hard links and
// fsync) by publishing and removing a probe file.
func Open(dir string, opt Options) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if opt.Create && !opt.ReadOnly {
		if err := os.MkdirAll(root, dirPerm); err != nil {
			return nil, fmt.Errorf("file store %s: %w", root, classify(err))
		}
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: file store %s: the directory does not exist (is the share mounted? walstored init creates a new repository)", errkind.ErrConfig, root)
	case err != nil:
		return nil, fmt.Errorf("file store %s: %w", root, classify(err))
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: file store %s is not a directory", errkind.ErrInvalid, root)
	}
	host, _ := os.Hostname()
	s := &Store{root: root, readOnly: opt.ReadOnly, host: sanitize(host)}
	if !opt.ReadOnly {
		if err := s.probe(); err != nil {
			return nil, fmt.Errorf("file store %s: %w", root, err)
		}
	}
	return s, nil
}

// sanitize keeps a host name usable inside a file name.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "host"
	}
	return string(b)
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Describe implements store.Describer.
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

func (s *Store) writable(op, key string) error {
	if s.readOnly {
		return fmt.Errorf("%w: %s %s: the file store was opened read-only", errkind.ErrForbidden, op, key)
	}
	return nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := s.writable("put", key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	final := s.path(key)
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("put %s: %w", key, errkind.ErrExists)
	}
	dir := filepath.Dir(final)
	f, created, err := s.createTemp(dir, filepath.Base(final))
	if err != nil {
		s.prune(created)
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful link this only drops the temp name
	if err := s.write(ctx, f, body); err != nil {
		os.Remove(tmp)
		s.prune(created)
		return fmt.Errorf("put %s: %w", key, classify(err))
	}
	if err := os.Link(tmp, final); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put %s: %w", key, errkind.ErrExists)
		}
		s.prune(created)
		return fmt.Errorf("put %s: %w", key, classify(err))
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("put %s: fsync directory: %w", key, classify(err))
	}
	return nil
}

// write copies exactly body.Len() bytes into f and makes them durable.
func (s *Store) write(ctx context.Context, f *os.File, body store.Body) error {
	_, err := io.Copy(f, &ctxReader{ctx: ctx, r: store.Exact(body)})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// createTemp makes a temporary file next to the final name, creating (and
// making durable) missing parent directories, which it returns so that a
// failed put can remove them again. The name carries this host and
// process, so SweepTemp can tell a crashed writer's file from a live one's.
// A directory removed by a concurrent Delete in between is created again.
func (s *Store) createTemp(dir, base string) (*os.File, []string, error) {
	var created []string
	for attempt := 0; ; attempt++ {
		c, err := s.mkdirAll(dir)
		created = append(created, c...)
		if err != nil {
			return nil, created, classify(err)
		}
		f, err := os.CreateTemp(dir, fmt.Sprintf(".%s%s%s-%d-*", base, tmpMark, s.host, os.Getpid()))
		if err == nil {
			if err := f.Chmod(filePerm); err != nil {
				f.Close()
				os.Remove(f.Name())
				return nil, created, err
			}
			return f, created, nil
		}
		if errors.Is(err, syscall.ENOTDIR) {
			return nil, created, fmt.Errorf("%w: a parent of %s is an object, not a directory", errkind.ErrInvalid, base)
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			return nil, created, classify(err)
		}
	}
}

// mkdirAll creates dir and its missing parents under the root, fsyncing
// each parent so that a new directory survives a crash. It returns the
// directories it created, deepest last.
func (s *Store) mkdirAll(dir string) ([]string, error) {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("%w: %s is an object, not a directory", errkind.ErrInvalid, strings.TrimPrefix(dir, s.root+"/"))
		}
		return nil, nil
	}
	if errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("%w: a parent of %s is an object, not a directory", errkind.ErrInvalid, strings.TrimPrefix(dir, s.root+"/"))
	}
	var created []string
	parent := filepath.Dir(dir)
	if parent != dir && strings.HasPrefix(parent, s.root) {
		c, err := s.mkdirAll(parent)
		created = c
		if err != nil {
			return created, err
		}
	}
	if err := os.Mkdir(dir, dirPerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return created, nil
		}
		return created, err
	}
	created = append(created, dir)
	return created, durable.SyncDir(parent)
}

// prune removes directories (deepest first) if they are empty.
func (s *Store) prune(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		if os.Remove(dirs[i]) != nil {
			return
		}
		_ = durable.SyncDir(filepath.Dir(dirs[i]))
	}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, classify(err))
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, errkind.ErrNotFound)
	}
	return &file{File: f, size: fi.Size(), ctx: ctx}, nil
}

// GetRange implements store.Ranger.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return store.SeekRange(ctx, s.Get, key, off, n)
}

// file is a Get result that knows its size and stops with its context.
type file struct {
	*os.File
	size int64
	ctx  context.Context
}

func (f *file) Size() int64 { return f.size }
func (f *file) Read(p []byte) (int, error) {
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func version(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	ino := uint64(0)
	if ok {
		ino = st.Ino
	}
	return strconv.FormatUint(ino, 10) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 10) + "-" + strconv.FormatInt(fi.Size(), 10)
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := store.ValidKey(key); err != nil {
		return store.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, classify(err))
	}
	if !fi.Mode().IsRegular() {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, errkind.ErrNotFound)
	}
	return store.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), Version: version(fi)}, nil
}

// Replace implements store.Replacer: the new bytes go to a temporary file
// in the same directory, are made durable, and are renamed over the old
// file only if it is still the copy old names. Replaces of one key are
// serialized within this process; walstored is the only writer that
// replaces (repair, recompression), so a concurrent replace from another
// host is not guarded against beyond the version check.
func (s *Store) Replace(ctx context.Context, key string, old store.Info, body store.Body) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := s.writable("replace", key); err != nil {
		return err
	}
	mu, _ := s.locks.LoadOrStore(key, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	final := s.path(key)
	dir := filepath.Dir(final)
	if _, err := os.Stat(final); err != nil {
		return fmt.Errorf("replace %s: %w", key, classify(err))
	}
	f, _, err := s.createTemp(dir, filepath.Base(final))
	if err != nil {
		return fmt.Errorf("replace %s: %w", key, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := s.write(ctx, f, body); err != nil {
		return fmt.Errorf("replace %s: %w", key, classify(err))
	}
	fi, err := os.Stat(final)
	if err != nil {
		return fmt.Errorf("replace %s: %w", key, classify(err))
	}
	if version(fi) != old.Version {
		return fmt.Errorf("replace %s: %w: the stored copy changed meanwhile", key, errkind.ErrConflict)
	}
	// The same content keeps its time: listings date WAL by it (when it
	// was archived), and a new encoding did not archive anything.
	if err := os.Chtimes(tmp, time.Time{}, fi.ModTime()); err != nil {
		return fmt.Errorf("replace %s: %w", key, classify(err))
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("replace %s: %w", key, classify(err))
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("replace %s: fsync directory: %w", key, classify(err))
	}
	return nil
}

// Delete implements store.Store. Parent directories it leaves empty are
// removed too (a deleted backup leaves no empty folder behind).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := s.writable("delete", key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
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
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("delete %s: fsync directory: %w", key, classify(err))
	}
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
		_ = durable.SyncDir(dir)
	}
	return nil
}

// List implements store.Store. Directories are walked with their entries
// sorted as they sort inside full keys (a directory "a" as "a/"), so keys
// come out in byte order without collecting them all first.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	dirKey := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dirKey = prefix[:i+1]
	}
	err := s.walk(ctx, dirKey, prefix, fn)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return ctx.Err()
	}
	return err
}

func (s *Store) walk(ctx context.Context, dirKey, prefix string, fn func(store.Info) error) error {
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
		if err := fn(store.Info{Key: e.sortKey, Size: fi.Size(), ModTime: fi.ModTime(), Version: version(fi)}); err != nil {
			return err
		}
	}
	return nil
}

// ListDirs implements store.DirLister: the entries of one directory.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := store.ValidPrefix(prefix); err != nil {
		return nil, err
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("%w: list dirs: prefix %q must end with /", errkind.ErrInvalid, prefix)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(prefix)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, classify(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, ctx.Err()
}

// SweepTemp removes temporary files left behind by writers that crashed
// mid-put: at once when they were written by a process of this host that
// is gone, after age otherwise (another host's writer may still be
// running). It returns how many it removed.
func (s *Store) SweepTemp(age time.Duration) (int, error) {
	if s.readOnly {
		return 0, nil
	}
	cutoff := time.Now().Add(-age)
	mine := tmpMark + s.host + "-"
	removed := 0
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		name := d.Name()
		if d.IsDir() || !strings.HasPrefix(name, ".") || !strings.Contains(name, tmpMark) {
			return nil
		}
		dead := false
		if i := strings.Index(name, mine); i >= 0 {
			pidText, _, _ := strings.Cut(name[i+len(mine):], "-")
			if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
				dead = true
			}
		}
		if fi, err := d.Info(); err == nil && (dead || fi.ModTime().Before(cutoff)) {
			if os.Remove(p) == nil {
				removed++
			}
		}
		return nil
	})
	return removed, err
}

// classify maps file system errors onto store's sentinels.
func classify(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %v", errkind.ErrNotFound, strip(err))
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %v", errkind.ErrNotFound, strip(err))
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %v", errkind.ErrNoSpace, strip(err))
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %v (the file system is mounted read-only)", errkind.ErrReadOnly, strip(err))
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %v", errkind.ErrForbidden, strip(err))
	}
	return err
}

// strip drops the absolute path from a *PathError: messages go to clients,
// which have no business knowing where the store lives.
func strip(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
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

// Space implements store.Spacer: the bytes free to this process (an
// unprivileged writer does not get the root reserve) and the size of
// the file system the store is on.
func (s *Store) Space() (free, capacity int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.root, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
