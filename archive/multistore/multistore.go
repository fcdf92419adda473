// Package multistore keeps several stores in step behind one
// archive.Store: a directory and a bucket, two buckets, ...
//
// Writes: an object is put-if-absent on every store, in parallel, with the
// same idempotency and conflict rules as one store. By default a put
// succeeds only when every store has it durably, so while one store is
// down pushes fail and PostgreSQL keeps its WAL and retries. With a quorum
// (Options.Quorum) a put succeeds once that many stores have it, and what
// the others are owed is recorded; Sync (and walstored's periodic pass)
// copies it when they are back.
//
// Reads: from the first store holding a copy that verifies (its SHA-256,
// or for encrypted objects its payload checksum); a miss, an error or a
// corrupt copy falls through to the next store, and the corrupt copy is
// reported, never served.
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

	"github.com/walstore/walstore/archive"
)

// Member is one store and the name it is reported under (its URL).
type Member struct {
	Name  string
	Store archive.Store
}

// Options are the write policy.
type Options struct {
	// Quorum: a put succeeds once this many stores have the object. 0 (or
	// the number of stores) means all of them: the default.
	Quorum int
	Log    *slog.Logger
	// OnCorrupt is called for every corrupt copy found on read.
	OnCorrupt func(store, key string, err error)
}

// Health is what is known of one store.
type Health struct {
	Name      string    `json:"name"`
	Up        bool      `json:"up"`
	LastError string    `json:"last_error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	Owed      int       `json:"owed_objects"`
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
	if err == nil || archive.Permanent(err) {
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
		return nil, fmt.Errorf("%w: a multi-store needs at least two stores", archive.ErrInvalid)
	}
	q := opt.Quorum
	if q == 0 {
		q = len(members)
	}
	if q < 1 || q > len(members) {
		return nil, fmt.Errorf("%w: quorum %d with %d stores", archive.ErrInvalid, opt.Quorum, len(members))
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	s := &Store{quorum: q, log: opt.Log, opt: opt}
	for _, m := range members {
		s.members = append(s.members, &member{Member: m, up: true, owed: map[string]bool{}})
	}
	return s, nil
}

// Describe implements archive.Describer.
func (s *Store) Describe() string {
	var names []string
	for _, m := range s.members {
		names = append(names, m.Name)
	}
	return strings.Join(names, " + ")
}

// Healthy reports whether enough stores answer to accept a push (the
// quorum; all of them by default).
func (s *Store) Healthy(ctx context.Context) error {
	ok := 0
	var errs []string
	for _, m := range s.members {
		_, err := m.Store.Stat(ctx, "healthz/meta/probe")
		if err == nil || errors.Is(err, archive.ErrNotFound) {
			ok++
			m.report(nil)
			continue
		}
		m.report(err)
		errs = append(errs, fmt.Sprintf("%s: %v", m.Name, err))
	}
	if ok < s.quorum {
		return fmt.Errorf("%d of %d stores answer, %d needed: %s", ok, len(s.members), s.quorum, strings.Join(errs, "; "))
	}
	return nil
}

// Health reports on every store.
func (s *Store) Health() []Health {
	var out []Health
	for _, m := range s.members {
		m.mu.Lock()
		out = append(out, Health{Name: m.Name, Up: m.up, LastError: m.lastErr, LastOK: m.lastOK, Owed: len(m.owed)})
		m.mu.Unlock()
	}
	return out
}

type putResult struct {
	err    error
	exists bool
	digest archive.Digest
}

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	if size < archive.HeaderSize || size > archive.MaxObjectSize {
		return fmt.Errorf("%w: put %s: size %d", archive.ErrInvalid, key, size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return fmt.Errorf("%w: put %s: body shorter than %d bytes: %v", archive.ErrInvalid, key, size, err)
	}
	hdr, err := archive.ParseHeader(data)
	if err != nil {
		return fmt.Errorf("%w: put %s: %v", archive.ErrInvalid, key, err)
	}
	// The first store that answers arbitrates: its put-if-absent decides
	// which of several racing writers wins, so two stores can never end up
	// holding different winners. The others then follow in parallel.
	res := make([]putResult, len(s.members))
	putOne := func(i int) {
		m := s.members[i]
		err := m.Store.Put(ctx, key, bytes.NewReader(data), size)
		res[i].err = err
		if errors.Is(err, archive.ErrExists) {
			res[i].exists, res[i].err = true, nil
			res[i].digest, res[i].err = storedDigest(ctx, m.Store, key, err)
		}
		m.report(res[i].err)
	}
	first := 0
	for ; first < len(s.members); first++ {
		putOne(first)
		if res[first].err == nil {
			break
		}
	}
	if first < len(s.members) && res[first].exists && res[first].digest != hdr.Digest {
		return &archive.ExistsError{Key: key, Stored: res[first].digest}
	}
	var wg sync.WaitGroup
	for i := first + 1; i < len(s.members); i++ {
		wg.Go(func() { putOne(i) })
	}
	wg.Wait()
	ok, stored := 0, 0
	var failures []string
	for i, r := range res {
		m := s.members[i]
		switch {
		case r.err != nil:
			failures = append(failures, fmt.Sprintf("%s: %v", m.Name, r.err))
		case r.exists && r.digest != hdr.Digest:
			// Another store holds other content: the stores disagree
			// (written around walstore, or split while one was down).
			// Reported as a conflict, never overwritten; sync names it.
			return &archive.ExistsError{Key: key, Stored: r.digest}
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
		return &archive.ExistsError{Key: key, Stored: hdr.Digest}
	}
	return nil
}

func storedDigest(ctx context.Context, st archive.Store, key string, putErr error) (archive.Digest, error) {
	var ee *archive.ExistsError
	if errors.As(putErr, &ee) {
		return ee.Stored, nil
	}
	hdr, err := archive.StatHeader(ctx, st, key)
	return hdr.Digest, err
}

// object is a verified copy served from memory.
type object struct {
	*bytes.Reader
}

func (object) Close() error { return nil }

// Get implements archive.Store: the first verified copy.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := archive.ValidKey(key); err != nil {
		return nil, err
	}
	var errs []string
	missing := 0
	for _, m := range s.members {
		data, err := readVerified(ctx, m.Store, key)
		switch {
		case err == nil:
			m.report(nil)
			return object{bytes.NewReader(data)}, nil
		case errors.Is(err, archive.ErrNotFound):
			m.report(nil)
			missing++
		case errors.Is(err, archive.ErrCorrupt):
			m.report(nil)
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
		return nil, fmt.Errorf("get %s: %w", key, archive.ErrNotFound)
	}
	if len(errs) > 0 && missing+len(errs) == len(s.members) && allCorrupt(errs) {
		return nil, fmt.Errorf("get %s: %w: no store has a good copy (%s)", key, archive.ErrCorrupt, strings.Join(errs, "; "))
	}
	return nil, fmt.Errorf("get %s: no store could serve it: %s", key, strings.Join(errs, "; "))
}

func allCorrupt(errs []string) bool {
	for _, e := range errs {
		if !strings.Contains(e, archive.ErrCorrupt.Error()) {
			return false
		}
	}
	return true
}

func readVerified(ctx context.Context, st archive.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, archive.MaxObjectSize+1))
	if err != nil {
		return nil, err
	}
	hdr, err := archive.VerifyStored(bytes.NewReader(data), nil)
	if err == nil && hdr.ObjectSize() != int64(len(data)) {
		err = fmt.Errorf("%w: %d bytes, header says %d", archive.ErrCorrupt, len(data), hdr.ObjectSize())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return data, nil
}

// Stat implements archive.Store: from the first store that has it.
func (s *Store) Stat(ctx context.Context, key string) (archive.Info, error) {
	var last error
	for _, m := range s.members {
		info, err := m.Store.Stat(ctx, key)
		if err == nil {
			return info, nil
		}
		if !errors.Is(err, archive.ErrNotFound) {
			m.report(err)
			last = err
		}
	}
	if last != nil {
		return archive.Info{}, last
	}
	return archive.Info{}, fmt.Errorf("stat %s: %w", key, archive.ErrNotFound)
}

// List implements archive.Store: the union of every store's listing. A
// store that cannot list fails the listing: deciding on half a picture
// (retention!) would be wrong.
func (s *Store) List(ctx context.Context, prefix string, fn func(archive.Info) error) error {
	seen := map[string]archive.Info{}
	for _, m := range s.members {
		err := m.Store.List(ctx, prefix, func(i archive.Info) error {
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

// Delete implements archive.Store: from every store.
func (s *Store) Delete(ctx context.Context, key string) error {
	missing := 0
	var errs []string
	for _, m := range s.members {
		err := m.Store.Delete(ctx, key)
		switch {
		case err == nil:
		case errors.Is(err, archive.ErrNotFound):
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
		return fmt.Errorf("delete %s: %w", key, archive.ErrNotFound)
	}
	return nil
}
