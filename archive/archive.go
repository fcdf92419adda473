package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Key layout of one archive inside a store:
//
//	<archive>/wal/<WAL file name>    segments, .partial, .history, .backup files
//	<archive>/meta/system            the system identifier the archive is bound to
//	<archive>/backups/<id>/...       base backups (see package backupset)
const (
	walDir    = "wal/"
	systemKey = "meta/system"
)

// DefaultArchive is the archive name used when none is given.
const DefaultArchive = "main"

// ValidArchiveName checks an archive name: 1 to 64 ASCII letters, digits,
// '.', '_' or '-', starting with a letter or digit.
func ValidArchiveName(name string) error {
	if name == "" || len(name) > 64 || strings.Contains(name, "/") || validComponent(name) != nil {
		return fmt.Errorf("%w: archive name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, printable(name))
	}
	return nil
}

// SplitKey splits a store key into its archive and the rest.
func SplitKey(key string) (archive, rest string) {
	archive, rest, _ = strings.Cut(key, "/")
	return archive, rest
}

// WALKey is the store key of a WAL file in an archive.
func WALKey(archive string, n Name) string { return archive + "/" + walDir + n.String() }

// SystemKey is the store key of an archive's system binding.
func SystemKey(archive string) string { return archive + "/" + systemKey }

// ParseWALKey returns the WAL name of a key under <archive>/wal/.
func ParseWALKey(archive, key string) (Name, bool) {
	rest, ok := strings.CutPrefix(key, archive+"/"+walDir)
	if !ok {
		return Name{}, false
	}
	n, err := ParseName(rest)
	return n, err == nil
}

// WrongSystemError reports a segment of another cluster than the archive's.
type WrongSystemError struct {
	Archive string
	Bound   uint64
	Got     uint64
}

func (e *WrongSystemError) Error() string {
	return fmt.Sprintf("archive %s belongs to PostgreSQL system %d; this file comes from system %d (another cluster, or a re-initialised one: use another --archive)", e.Archive, e.Bound, e.Got)
}

func (e *WrongSystemError) Unwrap() error { return ErrWrongSystem }

// Archive is one named archive (one PostgreSQL cluster's WAL and backups)
// in a store.
type Archive struct {
	Store Store
	Name  string
	// Keys encrypt what this client writes and decrypt what it reads
	// (nil: no encryption).
	Keys *Keyring

	mu    sync.Mutex
	bound uint64 // system identifier once known to be bound
}

// New returns the archive called name in s.
func New(s Store, name string) (*Archive, error) {
	if err := ValidArchiveName(name); err != nil {
		return nil, err
	}
	return &Archive{Store: s, Name: name}, nil
}

// Key returns the store key of a path inside the archive.
func (a *Archive) Key(rel string) string { return a.Name + "/" + rel }

// SystemID returns the system identifier the archive is bound to, or an
// error wrapping ErrNotFound if nothing was pushed yet.
func (a *Archive) SystemID(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	bound := a.bound
	a.mu.Unlock()
	if bound != 0 {
		return bound, nil
	}
	hdr, err := StatHeader(ctx, a.Store, SystemKey(a.Name))
	if err != nil {
		return 0, err
	}
	if hdr.SystemID == 0 {
		return 0, fmt.Errorf("%w: %s has no system identifier", ErrCorrupt, SystemKey(a.Name))
	}
	a.mu.Lock()
	a.bound = hdr.SystemID
	a.mu.Unlock()
	return hdr.SystemID, nil
}

// Bind binds the archive to sysid if it is not bound yet, and fails with a
// *WrongSystemError if it is bound to another system. Concurrent first
// pushes from two clusters cannot both win: the binding is a put-if-absent.
func (a *Archive) Bind(ctx context.Context, sysid uint64) error {
	if sysid == 0 {
		return fmt.Errorf("%w: system identifier 0", ErrInvalid)
	}
	bound, err := a.SystemID(ctx)
	if errors.Is(err, ErrNotFound) {
		enc := NewEncoder()
		enc.SystemID = sysid
		obj, eerr := enc.EncodeBytes([]byte(strconv.FormatUint(sysid, 10) + "\n"))
		if eerr != nil {
			return eerr
		}
		_, err = PutObject(ctx, a.Store, SystemKey(a.Name), obj)
		if errors.Is(err, ErrConflict) {
			a.mu.Lock()
			a.bound = 0
			a.mu.Unlock()
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
	a.mu.Lock()
	a.bound = sysid
	a.mu.Unlock()
	return nil
}

// PutWAL stores a WAL file (already checked and encoded by the caller). A
// segment or .partial must carry its system identifier in the envelope
// header; the archive is bound to it on first use and refuses others.
func (a *Archive) PutWAL(ctx context.Context, n Name, obj *Object) (Outcome, error) {
	if n.Kind == Segment || n.Kind == Partial {
		if err := a.Bind(ctx, obj.Header.SystemID); err != nil {
			return 0, err
		}
	}
	return PutObject(ctx, a.Store, WALKey(a.Name, n), obj)
}

// OpenWAL returns the verified raw contents of a WAL file.
func (a *Archive) OpenWAL(ctx context.Context, n Name) (Header, io.ReadCloser, error) {
	return GetObjectWith(ctx, a.Store, WALKey(a.Name, n), a.Keys)
}

// Open returns the verified raw contents of any object of the archive.
func (a *Archive) Open(ctx context.Context, key string) (Header, io.ReadCloser, error) {
	return GetObjectWith(ctx, a.Store, key, a.Keys)
}

// Encoder returns an encoder that encrypts with the archive's key, if any.
func (a *Archive) Encoder() *Encoder {
	e := NewEncoder()
	if a.Keys != nil {
		e.Key = a.Keys.Encrypt
	}
	return e
}

// ListWAL calls fn for every WAL file in the archive, in key order, with
// its name and size; prefix narrows the listing (e.g. a timeline's
// "00000002"). Keys that are not WAL names are skipped.
func (a *Archive) ListWAL(ctx context.Context, prefix string, fn func(Name, Info) error) error {
	return a.Store.List(ctx, a.Name+"/"+walDir+prefix, func(info Info) error {
		n, ok := ParseWALKey(a.Name, info.Key)
		if !ok {
			return nil
		}
		return fn(n, info)
	})
}
