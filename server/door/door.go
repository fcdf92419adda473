// Package door is walstored's door: everything stored through walstored
// (a client's put, its own WAL receiver's segments) passes these checks,
// in this order, before a byte reaches a store. One file each:
//
//  1. scope.go     the client's token allows this kind of key in this
//     archive (a push token writes WAL, a backup token adds backups)
//  2. limits.go    a length is declared, within what an object may be;
//     the memory the body will hold is within walstored's budget
//  3. name.go      the key is a valid archive and a key of the layout
//  4. admit.go     what the envelope header claims fits the archive
//     (archive.Rules.Admit: binding to the key, sizes, the system the
//     archive is bound to, retired timelines)
//  5. envelope.go  the body is the envelope it claims: every digest
//     verified as it is read, in memory or streamed into the store
//  6. content.go   the content is what it says: a segment read as
//     PostgreSQL reads it (wal.SegmentChecker), a history file or backup
//     label parsed and fitted to the archive
//  7. store.go     the one idempotency rule (archive.PutEnvelope): the
//     same content again is "already stored", other content a conflict,
//     a damaged stored copy repaired
//
// The HTTP handler (package server) only authenticates, decodes the
// request, calls Put and encodes the answer: a new check is a file here,
// in its place in Put.
package door

import (
	"context"
	"fmt"
	"io"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/store"
)

// Config is what the door guards and how much memory it may use.
type Config struct {
	Store store.Store
	// MemoryLimit bounds the request bodies (and stream checks) held in
	// memory at once; BufferLimit is the largest body held whole (larger
	// ones are verified as they stream into the store).
	MemoryLimit, BufferLimit int64
}

// Door checks and stores.
type Door struct {
	cfg    Config
	rules  *archive.Rules
	budget budget
}

// New returns the door in front of cfg.Store.
func New(cfg Config) *Door {
	return &Door{cfg: cfg, rules: archive.NewRules(cfg.Store), budget: budget{limit: cfg.MemoryLimit}}
}

// Rules are the archive rules the door asks (for the admin operations
// that change what they remember: a retired timeline, a deleted object).
func (d *Door) Rules() *archive.Rules { return d.rules }

// MemoryInUse is the request memory held now.
func (d *Door) MemoryInUse() int64 { return d.budget.inUse() }

// Result is what a put did.
type Result struct {
	Key     string
	K       archive.Key
	Header  envelope.Header
	Outcome archive.Outcome
}

// Put runs the checks (limits, name, admit, envelope, content) on a body
// of size bytes under key and stores it (store.go). The scope check
// (scope.go) comes first, in the handler, before the body is read. Its
// errors say which check refused: ErrNoLength, ErrTooLarge, ErrBusy,
// *Aborted, *Damaged, *BadWAL, or an archive error (invalid, wrong
// system, conflict).
func (d *Door) Put(ctx context.Context, key string, size int64, body io.Reader) (Result, error) {
	res := Result{Key: key}
	if err := CheckLength(key, size); err != nil {
		return res, err
	}
	if _, err := parseName(key); err != nil {
		return res, err
	}
	hdr, hb, err := readHeader(body)
	if err != nil {
		return res, fmt.Errorf("%s: %w", key, err)
	}
	res.Header = hdr
	if res.K, err = d.admit(ctx, key, hdr, size); err != nil {
		return res, err
	}
	if size <= d.cfg.BufferLimit {
		return d.putHeld(ctx, res, size, hb, body)
	}
	return d.putStreamed(ctx, res, size, hb, body)
}

// PutObject stores an envelope walstored made itself (its WAL receiver)
// through the same checks as a client's put.
func (d *Door) PutObject(ctx context.Context, key string, obj *envelope.Object) (Result, error) {
	res := Result{Key: key, Header: obj.Header}
	var err error
	if res.K, err = d.admit(ctx, key, obj.Header, obj.Size()); err != nil {
		return res, err
	}
	if err := d.checkSmall(ctx, res.K, obj.Header, obj.Bytes()); err != nil {
		return res, err
	}
	res.Outcome, err = archive.PutEnvelope(ctx, d.cfg.Store, key, obj.Header, store.Bytes(obj.Bytes()))
	return res, err
}
