package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Guarded is implemented by stores behind which walstored enforces the
// archive's rules (system binding, verified bodies, bound names) for
// everything written (store/httpstore): the client then need not read the
// binding before each push.
type Guarded interface{ Guarded() bool }

// BindingCache remembers an archive's system binding between processes
// (walpush keeps it next to the WAL it pushes), so that a push to a
// store nobody guards does not read the binding every time. A binding
// never changes once written.
type BindingCache interface {
	Load(archive string) (uint64, bool)
	Save(archive string, sysid uint64)
}

// Archive is one named archive (one PostgreSQL cluster's WAL and backups)
// in a repository.
type Archive struct {
	Store  store.Store
	Name   string
	Layout Layout
	// Keys encrypt what this client writes and decrypt what it reads
	// (nil: no encryption).
	Keys *envelope.Keyring
	// Cache, when set, remembers the system binding across processes.
	Cache BindingCache

	guarded bool
	mu      sync.Mutex
	bound   uint64 // system identifier once known to be bound
}

// New returns the archive called name in s.
func New(s store.Store, name string) (*Archive, error) {
	if err := ValidArchiveName(name); err != nil {
		return nil, err
	}
	a := &Archive{Store: s, Name: name, Layout: Layout{Archive: name}}
	if g, ok := store.As[Guarded](s); ok {
		a.guarded = g.Guarded()
	}
	return a, nil
}

// Key returns the store key of a path inside the archive ("wal/...").
func (a *Archive) Key(rel string) string { return a.Name + "/" + rel }

// Encoder returns an encoder that encrypts with the archive's key, if any.
func (a *Archive) Encoder() *envelope.Encoder {
	e := envelope.NewEncoder()
	if a.Keys != nil {
		e.Key = a.Keys.Encrypt
	}
	return e
}

// SystemID returns the system identifier the archive is bound to, or an
// error wrapping ErrNotFound if nothing was pushed yet.
func (a *Archive) SystemID(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	bound := a.bound
	a.mu.Unlock()
	if bound != 0 {
		return bound, nil
	}
	if a.Cache != nil {
		if id, ok := a.Cache.Load(a.Name); ok {
			a.setBound(id)
			return id, nil
		}
	}
	hdr, rc, err := a.Open(ctx, a.Layout.System())
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(io.LimitReader(rc, 64))
	rc.Close()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", a.Layout.System(), err)
	}
	id, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if perr != nil || id == 0 || hdr.SystemID != id {
		return 0, fmt.Errorf("%w: %s does not hold a system identifier", errkind.ErrCorrupt, a.Layout.System())
	}
	a.setBound(id)
	if a.Cache != nil {
		a.Cache.Save(a.Name, id)
	}
	return id, nil
}

func (a *Archive) setBound(id uint64) {
	a.mu.Lock()
	a.bound = id
	a.mu.Unlock()
}

// Bind binds the archive to sysid if it is not bound yet, and fails with
// a *WrongSystemError if it is bound to another system. Concurrent first
// pushes from two clusters cannot both win: the binding is a
// put-if-absent.
func (a *Archive) Bind(ctx context.Context, sysid uint64) error {
	if sysid == 0 {
		return fmt.Errorf("%w: system identifier 0", errkind.ErrInvalid)
	}
	bound, err := a.SystemID(ctx)
	if errors.Is(err, errkind.ErrNotFound) {
		enc := envelope.NewEncoder() // never encrypted: walstored reads it
		enc.SystemID = sysid
		obj, eerr := enc.EncodeBytes([]byte(strconv.FormatUint(sysid, 10)+"\n"), a.Layout.System())
		if eerr != nil {
			return eerr
		}
		_, err = PutObject(ctx, a.Store, a.Layout.System(), obj)
		if errors.Is(err, errkind.ErrConflict) {
			a.setBound(0)
			bound, err = a.SystemID(ctx)
		} else if err == nil {
			bound = sysid
		}
	}
	if err != nil {
		return fmt.Errorf("read the system binding of archive %s: %w", a.Name, err)
	}
	if bound != sysid {
		return &WrongSystemError{Archive: a.Name, Bound: bound, Got: sysid}
	}
	a.setBound(sysid)
	return nil
}

// Guarded reports whether the archive is behind walstored's door, which
// checks and binds what reaches the store itself.
func (a *Archive) Guarded() bool { return a.guarded }

// PutWAL stores a WAL file (already checked and encoded by the caller,
// bound to its key). A segment or .partial must carry its system
// identifier in the envelope header; the archive is bound to it on first
// use and refuses others (walstored checks that itself, so a client of
// walstored does not read the binding first).
func (a *Archive) PutWAL(ctx context.Context, n wal.Name, obj *envelope.Object) (Outcome, error) {
	if (n.Kind == wal.Segment || n.Kind == wal.Partial) && !a.guarded {
		if err := a.Bind(ctx, obj.Header.SystemID); err != nil {
			return 0, err
		}
	}
	return PutObject(ctx, a.Store, a.Layout.WAL(n), obj)
}

// EncodeWAL packs raw WAL file contents for n, bound to n's key.
func (a *Archive) EncodeWAL(enc *envelope.Encoder, r io.Reader, size int64, n wal.Name) (*envelope.Object, error) {
	return enc.Encode(r, size, a.Layout.WAL(n))
}

// OpenWAL returns the verified raw contents of a WAL file.
func (a *Archive) OpenWAL(ctx context.Context, n wal.Name) (envelope.Header, io.ReadCloser, error) {
	return a.Open(ctx, a.Layout.WAL(n))
}

// Open returns the verified raw contents of any object of the archive:
// its header is checked, and its binding to key; the content is checked
// as it is read (see envelope.Open).
func (a *Archive) Open(ctx context.Context, key string) (envelope.Header, io.ReadCloser, error) {
	return OpenObject(ctx, a.Store, key, a.Keys)
}

// OpenObject is Open on any store.
func OpenObject(ctx context.Context, s store.Store, key string, kr *envelope.Keyring) (envelope.Header, io.ReadCloser, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return envelope.Header{}, nil, err
	}
	hdr, raw, err := envelope.Open(rc, Identity(key), kr)
	if err != nil {
		rc.Close()
		return hdr, nil, fmt.Errorf("%s: %w", key, err)
	}
	return hdr, &closeBoth{ReadCloser: raw, under: rc}, nil
}

type closeBoth struct {
	io.ReadCloser
	under io.Closer
}

func (c *closeBoth) Close() error {
	c.ReadCloser.Close()
	return c.under.Close()
}

// Load reads the object under key through consume, which gets its
// header and its raw content, verified as it is read (the envelope's
// SHA-256 and binding fail the read at its end). A read that fails to
// verify, in the envelope or in consume (errkind.ErrCorrupt), is run
// again by a retrying store (store.Load): callers write no loop.
func (a *Archive) Load(ctx context.Context, key string, consume func(envelope.Header, io.Reader) error) error {
	return a.load(ctx, key, envelope.Open, consume)
}

// LoadUnhashed is Load for a consumer that checks every byte it uses
// against hashes of its own and fails with ErrCorrupt when one differs
// (then the object is read once more, as by Load): the content's SHA-256
// is not computed (envelope.OpenUnhashed).
func (a *Archive) LoadUnhashed(ctx context.Context, key string, consume func(envelope.Header, io.Reader) error) error {
	return a.load(ctx, key, envelope.OpenUnhashed, consume)
}

func (a *Archive) load(ctx context.Context, key string, open func(io.Reader, string, *envelope.Keyring) (envelope.Header, io.ReadCloser, error), consume func(envelope.Header, io.Reader) error) error {
	return store.Load(ctx, a.Store, key, func(r io.Reader) error {
		hdr, raw, err := open(r, Identity(key), a.Keys)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		defer raw.Close()
		return consume(hdr, raw)
	})
}

// ReadAll reads a whole (small) object of the archive, verified.
func (a *Archive) ReadAll(ctx context.Context, key string, limit int64) ([]byte, envelope.Header, error) {
	var b []byte
	var hdr envelope.Header
	err := a.Load(ctx, key, func(h envelope.Header, r io.Reader) error {
		hdr = h
		var err error
		if b, err = io.ReadAll(io.LimitReader(r, limit+1)); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, hdr, err
	}
	if int64(len(b)) > limit {
		return nil, hdr, fmt.Errorf("%w: %s is larger than %d bytes", errkind.ErrCorrupt, key, limit)
	}
	return b, hdr, nil
}

// StatHeader reads just the envelope header of a stored object.
func StatHeader(ctx context.Context, s store.Store, key string) (envelope.Header, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return envelope.Header{}, err
	}
	defer rc.Close()
	hdr, err := envelope.ReadHeader(rc)
	if err != nil {
		return hdr, fmt.Errorf("%s: %w", key, err)
	}
	return hdr, nil
}

// ListWAL calls fn for every WAL file in the archive, in key order, with
// its name and size; prefix narrows the listing (e.g. a timeline's
// "00000002"). Keys that are not WAL names are skipped.
func (a *Archive) ListWAL(ctx context.Context, prefix string, fn func(wal.Name, store.Info) error) error {
	return a.Store.List(ctx, a.Layout.WALPrefix()+prefix, func(info store.Info) error {
		k, err := ParseKey(info.Key)
		if err != nil || k.Kind != KindWAL {
			return nil
		}
		return fn(k.WAL, info)
	})
}

// Exists reports whether the archive holds anything at all.
func (a *Archive) Exists(ctx context.Context) (bool, error) {
	found := false
	err := a.Store.List(ctx, a.Layout.Prefix(), func(store.Info) error { found = true; return errStop })
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

var errStop = errors.New("stop")
