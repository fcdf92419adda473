// Package multistore keeps several stores in step behind one store.Store:
// a directory and a bucket, two buckets, ...
//
// It is tier 1: it moves bytes and never parses them. What it needs to
// know about content, it is told by the repository layer through two
// functions: Identity (what content an object holds, so that two copies
// can be compared even when their encodings differ) and Verify (whether a
// copy is intact under its key).
//
// Writes: an object is put-if-absent on every store, with the same
// write-once rule as one store. By default a put succeeds only when every
// store has it durably, so while one store is down pushes fail and
// PostgreSQL keeps its WAL and retries. With a quorum (Options.Quorum) a
// put succeeds once that many stores have it, and what the others are
// owed is recorded; Sync (and walstored's periodic pass) copies it when
// they are back. A body held in memory is read by every store through its
// own view of the same bytes, the first store answering first so that it
// alone decides between racing writers; a streamed body (too large to
// hold) is sent to every store at once.
//
// Reads: from the first store holding a copy that verifies; a miss, an
// error or a corrupt copy falls through to the next store, and the corrupt
// copy is reported, never served.
//
// A conflict between stores (one name, two contents) is reported, never
// resolved by overwriting.
package multistore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Member is one store and the name it is reported under (its URL).
type Member struct {
	Name  string
	Store store.Store
}

// Options are the write policy and what the repository layer tells the
// wrapper about content.
type Options struct {
	// Quorum: a put succeeds once this many stores have the object. 0 (or
	// the number of stores) means all of them: the default.
	Quorum int
	// Identity reads an object and returns what content it holds (the
	// repository's raw SHA-256). Copies with the same identity are the
	// same object. Default: the bytes themselves.
	Identity func(key string, r io.Reader) (string, error)
	// Verify checks a copy read from one store; an error wrapping
	// ErrCorrupt means that copy is damaged. Default: no check.
	Verify func(key string, r io.Reader) error
	// MaxRead bounds the size of an object read into memory to be
	// verified before it is served (default 1 GiB + 64 MiB).
	MaxRead int64
	Log     *slog.Logger
	// OnCorrupt is called for every corrupt copy found on read.
	OnCorrupt func(store, key string, err error)
	// Local reports keys that belong to one store and are never copied
	// by Sync (a lease held in one store, a write probe).
	Local func(key string) bool
}

type member struct {
	Member
	mu      sync.Mutex
	up      bool
	lastErr string
	lastOK  time.Time
	owed    map[string]bool
}

func (m *member) report(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil || errkind.Permanent(err) {
		m.up, m.lastOK = true, time.Now()
		return
	}
	m.up, m.lastErr = false, err.Error()
}

func (m *member) owe(key string, owed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if owed {
		m.owed[key] = true
	} else {
		delete(m.owed, key)
	}
}

// Store is the multi-store wrapper.
type Store struct {
	members []*member
	quorum  int
	log     *slog.Logger
	opt     Options
}

// New combines the members, the first one read first.
func New(members []Member, opt Options) (*Store, error) {
	if len(members) < 2 {
		return nil, fmt.Errorf("%w: a multi-store needs at least two stores", errkind.ErrInvalid)
	}
	q := opt.Quorum
	if q == 0 {
		q = len(members)
	}
	if q < 1 || q > len(members) {
		return nil, fmt.Errorf("%w: quorum %d with %d stores", errkind.ErrInvalid, opt.Quorum, len(members))
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Identity == nil {
		opt.Identity = byteIdentity
	}
	if opt.Verify == nil {
		opt.Verify = func(string, io.Reader) error { return nil }
	}
	if opt.MaxRead <= 0 {
		opt.MaxRead = 1<<30 + 64<<20
	}
	s := &Store{quorum: q, log: opt.Log, opt: opt}
	for _, m := range members {
		s.members = append(s.members, &member{Member: m, up: true, owed: map[string]bool{}})
	}
	return s, nil
}

// byteIdentity: without a repository's notion of content, a copy is its
// bytes.
func byteIdentity(_ string, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}

// Describe implements store.Describer.
func (s *Store) Describe() string {
	var names []string
	for _, m := range s.members {
		names = append(names, m.Name)
	}
	return strings.Join(names, " + ")
}

// Members returns the stores, first one first.
func (s *Store) Members() []Member {
	out := make([]Member, len(s.members))
	for i, m := range s.members {
		out[i] = m.Member
	}
	return out
}

// Check implements store.Checker: enough stores answer and accept writes
// to take a push (the quorum; all of them by default).
func (s *Store) Check(ctx context.Context, probe string) error {
	ok := 0
	var errs []string
	for _, m := range s.members {
		err := store.Probe(ctx, m.Store, probe)
		m.report(err)
		if err == nil {
			ok++
			continue
		}
		errs = append(errs, fmt.Sprintf("%s: %v", m.Name, err))
	}
	if ok < s.quorum {
		return fmt.Errorf("%d of %d stores work, %d needed: %s", ok, len(s.members), s.quorum, strings.Join(errs, "; "))
	}
	return nil
}

// MemberStores implements store.Memberer.
func (s *Store) MemberStores() []store.Store {
	out := make([]store.Store, len(s.members))
	for i, m := range s.members {
		out[i] = m.Store
	}
	return out
}

// Health implements store.Reporter.
func (s *Store) Health() []store.Health {
	var out []store.Health
	for _, m := range s.members {
		m.mu.Lock()
		out = append(out, store.Health{Name: m.Name, Up: m.up, LastError: m.lastErr, LastOK: m.lastOK, Owed: len(m.owed)})
		m.mu.Unlock()
	}
	return out
}

type putResult struct {
	err      error
	exists   bool
	identity string
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	ra, inMemory := body.(store.ReaderAtBody)
	if !inMemory {
		return s.putStream(ctx, key, body)
	}
	n := body.Len()
	view := func() store.Body { return store.Section(ra.ReaderAt(), n) }
	ours, err := s.opt.Identity(key, io.NewSectionReader(ra.ReaderAt(), 0, n))
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	// The first store that answers arbitrates: its put-if-absent decides
	// which of several racing writers wins, so two stores can never end up
	// holding different winners. The others then follow in parallel.
	res := make([]putResult, len(s.members))
	putOne := func(i int) {
		m := s.members[i]
		res[i] = s.putMember(ctx, m, key, view())
	}
	first := 0
	for ; first < len(s.members); first++ {
		putOne(first)
		if res[first].err == nil || errkind.Permanent(res[first].err) {
			break
		}
	}
	if first < len(s.members) && res[first].err != nil {
		return res[first].err // refused (invalid, forbidden): the same everywhere
	}
	if first < len(s.members) && res[first].exists && res[first].identity != ours {
		return &store.ExistsError{Key: key, Identity: res[first].identity}
	}
	var wg sync.WaitGroup
	for i := first + 1; i < len(s.members); i++ {
		wg.Go(func() { putOne(i) })
	}
	wg.Wait()
	return s.settle(key, ours, res)
}

// putMember puts one copy and, when the name is taken there, finds out
// what that store holds.
func (s *Store) putMember(ctx context.Context, m *member, key string, body store.Body) putResult {
	var r putResult
	r.err = m.Store.Put(ctx, key, body)
	if errors.Is(r.err, errkind.ErrExists) {
		r.exists = true
		r.identity, r.err = s.storedIdentity(ctx, m.Store, key, r.err)
	}
	m.report(r.err)
	return r
}

func (s *Store) storedIdentity(ctx context.Context, st store.Store, key string, putErr error) (string, error) {
	var ee *store.ExistsError
	if errors.As(putErr, &ee) && ee.Identity != "" {
		return ee.Identity, nil
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("read the stored %s to compare: %w", key, err)
	}
	defer rc.Close()
	return s.opt.Identity(key, rc)
}

// settle turns the members' results into the put's outcome.
func (s *Store) settle(key, ours string, res []putResult) error {
	ok, stored := 0, 0
	var failures []string
	for i, r := range res {
		m := s.members[i]
		switch {
		case r.err != nil:
			failures = append(failures, fmt.Sprintf("%s: %v", m.Name, r.err))
		case r.exists && r.identity != ours:
			// Another store holds other content: the stores disagree
			// (written around walstore, or split while one was down).
			// Reported as a conflict, never overwritten; sync names it.
			return &store.ExistsError{Key: key, Identity: r.identity}
		case r.exists:
			ok++
		default:
			ok, stored = ok+1, stored+1
		}
	}
	if len(failures) > 0 && ok < s.quorum {
		return fmt.Errorf("put %s: %d of %d stores have it, %d needed: %s", key, ok, len(s.members), s.quorum, strings.Join(failures, "; "))
	}
	for i, r := range res {
		s.members[i].owe(key, r.err != nil)
		if r.err != nil {
			s.log.Warn("store owed an object (quorum write)", "store", s.members[i].Name, "key", key, "error", r.err.Error())
		}
	}
	if stored == 0 {
		return &store.ExistsError{Key: key, Identity: ours}
	}
	return nil
}

// putStream sends a body that can be read only once to every store at
// the same time, each through its own pipe; a store that fails drops out
// without holding the others back. Its identity is computed on the way.
func (s *Store) putStream(ctx context.Context, key string, body store.Body) error {
	n := body.Len()
	pipes := make([]*io.PipeWriter, len(s.members))
	res := make([]putResult, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		pr, pw := io.Pipe()
		pipes[i] = pw
		wg.Go(func() {
			res[i] = s.putMember(ctx, m, key, store.Stream(pr, n))
			pr.CloseWithError(errMemberDone) // unblock the fan-out if this store stopped early
		})
	}
	idr, idw := io.Pipe()
	var ours string
	var idErr error
	var idWG sync.WaitGroup
	idWG.Go(func() {
		ours, idErr = s.opt.Identity(key, idr)
		io.Copy(io.Discard, idr)
	})
	buf := make([]byte, 256<<10)
	src := store.Exact(body)
	var readErr error
	alive := len(pipes)
	for alive > 0 {
		k, err := src.Read(buf)
		if k > 0 {
			idw.Write(buf[:k])
			for i, pw := range pipes {
				if pw == nil {
					continue
				}
				if _, werr := pw.Write(buf[:k]); werr != nil {
					pipes[i] = nil
					alive--
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	for _, pw := range pipes {
		if pw == nil {
			continue
		}
		if readErr != nil {
			pw.CloseWithError(readErr)
		} else {
			pw.Close()
		}
	}
	idw.CloseWithError(readErr)
	wg.Wait()
	idWG.Wait()
	if readErr != nil {
		return fmt.Errorf("put %s: %w", key, readErr)
	}
	if idErr != nil {
		return fmt.Errorf("put %s: %w", key, idErr)
	}
	for _, r := range res {
		if r.err != nil && errkind.Permanent(r.err) {
			return r.err
		}
	}
	return s.settle(key, ours, res)
}

var errMemberDone = errors.New("store stopped reading")

// Get implements store.Store: the first copy that verifies. A copy is
// read whole and verified before any byte of it is served.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	var errs []string
	missing, corrupt := 0, 0
	for _, m := range s.members {
		data, err := s.readVerified(ctx, m.Store, key)
		switch {
		case err == nil:
			m.report(nil)
			return io.NopCloser(bytes.NewReader(data)), nil
		case errors.Is(err, errkind.ErrNotFound):
			m.report(nil)
			missing++
		case errors.Is(err, errkind.ErrCorrupt):
			m.report(nil)
			corrupt++
			s.log.Error("corrupt copy in one store; served from another", "store", m.Name, "key", key, "error", err.Error())
			if s.opt.OnCorrupt != nil {
				s.opt.OnCorrupt(m.Name, key, err)
			}
			errs = append(errs, fmt.Sprintf("%s: %v", m.Name, err))
		default:
			m.report(err)
			errs = append(errs, fmt.Sprintf("%s: %v", m.Name, err))
		}
	}
	if missing == len(s.members) {
		return nil, fmt.Errorf("get %s: %w", key, errkind.ErrNotFound)
	}
	if corrupt > 0 && missing+corrupt == len(s.members) {
		return nil, fmt.Errorf("get %s: %w: no store has a good copy (%s)", key, errkind.ErrCorrupt, strings.Join(errs, "; "))
	}
	return nil, fmt.Errorf("get %s: no store could serve it: %s", key, strings.Join(errs, "; "))
}

func (s *Store) readVerified(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, s.opt.MaxRead+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > s.opt.MaxRead {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", errkind.ErrCorrupt, key, s.opt.MaxRead)
	}
	if err := s.opt.Verify(key, bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return data, nil
}

// GetRange implements store.Ranger: from the first store that has the
// object. A part cannot be verified here (the envelope's digests cover
// the whole); the caller checks it, and reads the object whole with Get,
// which picks a copy that verifies, when the part is not what it expects.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	var last error
	for _, m := range s.members {
		rc, err := store.GetRange(ctx, m.Store, key, off, n)
		if err == nil {
			return rc, nil
		}
		if !errors.Is(err, errkind.ErrNotFound) {
			m.report(err)
			last = err
		}
	}
	if last != nil {
		return nil, last
	}
	return nil, fmt.Errorf("get %s: %w", key, errkind.ErrNotFound)
}

// Stat implements store.Store: from the first store that has it.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	var last error
	for _, m := range s.members {
		info, err := m.Store.Stat(ctx, key)
		if err == nil {
			return info, nil
		}
		if !errors.Is(err, errkind.ErrNotFound) {
			m.report(err)
			last = err
		}
	}
	if last != nil {
		return store.Info{}, last
	}
	return store.Info{}, fmt.Errorf("stat %s: %w", key, errkind.ErrNotFound)
}

// List implements store.Store: the union of every store's listing. A
// store that cannot list fails the listing: deciding on half a picture
// (retention!) would be wrong.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	seen := map[string]store.Info{}
	for _, m := range s.members {
		err := m.Store.List(ctx, prefix, func(i store.Info) error {
			if _, ok := seen[i.Key]; !ok {
				seen[i.Key] = i
			}
			return nil
		})
		if err != nil {
			m.report(err)
			return fmt.Errorf("list %q in %s: %w", prefix, m.Name, err)
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(seen[k]); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements store.Store: from every store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	missing := 0
	var errs []string
	for _, m := range s.members {
		err := m.Store.Delete(ctx, key)
		switch {
		case err == nil:
		case errors.Is(err, errkind.ErrNotFound):
			missing++
		default:
			m.report(err)
			errs = append(errs, fmt.Sprintf("%s: %v", m.Name, err))
		}
		m.owe(key, false)
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete %s: %s", key, strings.Join(errs, "; "))
	}
	if missing == len(s.members) {
		return fmt.Errorf("delete %s: %w", key, errkind.ErrNotFound)
	}
	return nil
}

// Replace implements store.Replacer: the copy in every store that holds
// the object is replaced (each conditional on its own current version),
// so it needs stores that can replace.
func (s *Store) Replace(ctx context.Context, key string, old store.Info, body store.Body) error {
	ra, ok := body.(store.ReaderAtBody)
	if !ok {
		return fmt.Errorf("%w: replace %s: needs a body held in memory or a file", errkind.ErrInvalid, key)
	}
	replaced := 0
	for _, m := range s.members {
		r, ok := store.As[store.Replacer](m.Store)
		if !ok {
			return fmt.Errorf("%w: replace %s: %s cannot replace objects", errkind.ErrInvalid, key, m.Name)
		}
		cur, err := m.Store.Stat(ctx, key)
		if errors.Is(err, errkind.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if replaced == 0 && cur.Version != old.Version {
			return fmt.Errorf("replace %s: %w: the stored copy changed meanwhile", key, errkind.ErrConflict)
		}
		if err := r.Replace(ctx, key, cur, store.Section(ra.ReaderAt(), body.Len())); err != nil {
			return fmt.Errorf("replace %s in %s: %w", key, m.Name, err)
		}
		replaced++
	}
	if replaced == 0 {
		return fmt.Errorf("replace %s: %w", key, errkind.ErrNotFound)
	}
	return nil
}
