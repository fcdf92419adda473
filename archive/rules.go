package archive

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Rules are the archive's rules for what may be stored in it, as
// walstored's door (server/door) asks them: Admit judges a put from its
// key and envelope header (before the body arrives: the key's kind, the
// archive's system binding and segment size, retired timelines);
// SegmentCheck and CheckContent judge the content (every segment read as
// PostgreSQL reads it; history files and backup labels parsed and fitted
// to the archive). They remember each archive's binding and retired
// timelines, bounded.
type Rules struct {
	Store store.Store

	mu       sync.Mutex
	archives map[string]*list.Element // of *ruleArchive, bounded
	lru      *list.List
}

// maxRuleArchives bounds the archives whose binding and retired
// timelines the door remembers.
const maxRuleArchives = 4096

// retiredTTL is how long the door trusts what it read of an archive's
// retired timelines (retire runs elsewhere: walstored retire).
const retiredTTL = 10 * time.Second

type ruleArchive struct {
	a       *Archive
	retired map[uint32]retiredEntry // by timeline, what was read and when
	segSize int64                   // of the first segment admitted (0: none yet)
}

type retiredEntry struct {
	rec *RetiredTimeline // nil: not retired
	at  time.Time
}

// NewRules returns the rules of the archives in s.
func NewRules(s store.Store) *Rules {
	return &Rules{Store: s, archives: map[string]*list.Element{}, lru: list.New()}
}

// Archive returns the (remembered) handle of an archive.
func (d *Rules) Archive(name string) (*Archive, error) {
	da, err := d.entry(name)
	if err != nil {
		return nil, err
	}
	return da.a, nil
}

func (d *Rules) entry(name string) (*ruleArchive, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.archives[name]; ok {
		d.lru.MoveToFront(el)
		return el.Value.(*ruleArchive), nil
	}
	a, err := New(d.Store, name)
	if err != nil {
		return nil, err
	}
	da := &ruleArchive{a: a, retired: map[uint32]retiredEntry{}}
	d.archives[name] = d.lru.PushFront(da)
	for d.lru.Len() > maxRuleArchives {
		old := d.lru.Back()
		d.lru.Remove(old)
		delete(d.archives, old.Value.(*ruleArchive).a.Name)
	}
	return da, nil
}

// Forget drops what the door remembers of an archive (after an admin
// changed its retired timelines, or a delete).
func (d *Rules) Forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.archives[name]; ok {
		d.lru.Remove(el)
		delete(d.archives, name)
	}
}

// retiredRecord returns timeline tli's retirement record, or nil. It is
// one read of one key (so it works while one of several stores is down),
// remembered for retiredTTL.
func (d *Rules) retiredRecord(ctx context.Context, da *ruleArchive, tli uint32) (*RetiredTimeline, error) {
	d.mu.Lock()
	e, ok := da.retired[tli]
	d.mu.Unlock()
	if ok && time.Since(e.at) < retiredTTL {
		return e.rec, nil
	}
	b, _, err := da.a.ReadAll(ctx, da.a.Layout.RetiredRecord(tli), 16<<20)
	var rec *RetiredTimeline
	switch {
	case errors.Is(err, errkind.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		var r RetiredTimeline
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errkind.ErrCorrupt, da.a.Layout.RetiredRecord(tli), err)
		}
		rec = &r
	}
	d.mu.Lock()
	if len(da.retired) >= 1024 {
		da.retired = map[uint32]retiredEntry{} // bounded: start again
	}
	da.retired[tli] = retiredEntry{rec: rec, at: time.Now()}
	d.mu.Unlock()
	return rec, nil
}

// Admit checks a put of key, whose envelope header hdr says the body is
// size bytes, before the body arrives: the format version, the binding of
// the object to its key, its sizes, a segment's system identifier (and
// the archive's binding, made here on first use), and timelines retired
// as dead branches.
func (d *Rules) Admit(ctx context.Context, key string, hdr envelope.Header, size int64) (Key, error) {
	k, err := ParseKey(key)
	if err != nil {
		return k, err
	}
	if hdr.Version < envelope.Version {
		return k, fmt.Errorf("%w: %s: object format version %d comes from an older walstore client, which does not bind objects to their names: upgrade walpush and walstored together", errkind.ErrInvalid, key, hdr.Version)
	}
	if id := Identity(key); hdr.Name != id {
		return k, fmt.Errorf("%w: %s: the object is bound to %q", errkind.ErrInvalid, key, hdr.Name)
	}
	if hdr.ObjectSize() != size {
		return k, fmt.Errorf("%w: %s: Content-Length %d, but the object header says %d", errkind.ErrInvalid, key, size, hdr.ObjectSize())
	}
	switch k.Kind {
	case KindWAL:
		return k, d.admitWAL(ctx, k, hdr)
	case KindLabelCopy:
		if hdr.Digest.String() != k.Digest {
			return k, fmt.Errorf("%w: %s: the key names SHA-256 %s, the content is %s", errkind.ErrInvalid, key, k.Digest, hdr.Digest)
		}
		if hdr.RawSize > wal.MaxBackupLabelSize {
			return k, fmt.Errorf("%w: %s: %d bytes is more than a backup label holds", errkind.ErrInvalid, key, hdr.RawSize)
		}
	case KindSystem:
		// Only an admin gets here (a push client may write WAL files
		// only); walstored itself binds an archive from its first segment.
		if hdr.SystemID == 0 || hdr.Encrypted() || hdr.RawSize > 32 {
			return k, fmt.Errorf("%w: %s: a system binding holds its system identifier", errkind.ErrInvalid, key)
		}
	}
	return k, nil
}

func (d *Rules) admitWAL(ctx context.Context, k Key, hdr envelope.Header) error {
	n := k.WAL
	da, err := d.entry(k.Archive)
	if err != nil {
		return err
	}
	switch n.Kind {
	case wal.Segment, wal.Partial:
		if hdr.SystemID == 0 {
			return fmt.Errorf("%w: %s: a segment must carry its system identifier", errkind.ErrInvalid, n)
		}
		if !wal.ValidSegmentSize(hdr.RawSize) || !n.ValidFor(hdr.RawSize) {
			return fmt.Errorf("%w: %s: %d bytes is not a segment of this name", errkind.ErrInvalid, n, hdr.RawSize)
		}
		if err := da.a.Bind(ctx, hdr.SystemID); err != nil {
			return err
		}
		d.mu.Lock()
		if da.segSize == 0 {
			da.segSize = hdr.RawSize
		}
		seg := da.segSize
		d.mu.Unlock()
		if seg != hdr.RawSize {
			return fmt.Errorf("%w: %s: %d bytes, but archive %s holds segments of %d bytes", errkind.ErrInvalid, n, hdr.RawSize, k.Archive, seg)
		}
	case wal.History:
		if hdr.RawSize > wal.MaxHistorySize {
			return fmt.Errorf("%w: %s: %d bytes is more than a history file holds", errkind.ErrInvalid, n, hdr.RawSize)
		}
	case wal.Backup:
		if hdr.RawSize > wal.MaxBackupLabelSize {
			return fmt.Errorf("%w: %s: %d bytes is more than a backup label holds", errkind.ErrInvalid, n, hdr.RawSize)
		}
	}
	if n.TLI < 2 {
		return nil
	}
	r, err := d.retiredRecord(ctx, da, n.TLI)
	if err != nil || r == nil {
		return err
	}
	if n.Kind == wal.History && hdr.Digest.String() == r.HistorySHA256 {
		return fmt.Errorf("%w: %s: timeline %d of archive %s was retired as a dead branch (%s): the server still pushing it must be fenced", errkind.ErrConflict, n, n.TLI, k.Archive, r.At.Format(time.RFC3339))
	}
	if n.Kind != wal.History {
		if _, err := d.Store.Stat(ctx, da.a.Layout.WAL(wal.Name{Kind: wal.History, TLI: n.TLI})); errors.Is(err, errkind.ErrNotFound) {
			return fmt.Errorf("%w: %s: timeline %d of archive %s was retired as a dead branch (%s) and no new history file for it was pushed: the server still writing it must be fenced", errkind.ErrConflict, n, n.TLI, k.Archive, r.At.Format(time.RFC3339))
		}
	}
	return nil
}

// ContentCheck reads an object's raw content as it passes the door, and
// gives its verdict at Close.
type ContentCheck interface {
	io.Writer
	Close() error
}

// SegmentCheck returns the check of a segment's or .partial file's
// content (wal.SegmentChecker: the pages and records as PostgreSQL's
// reader reads them), or nil for other objects and for encrypted ones,
// which the client checks (the door cannot read them).
func SegmentCheck(k Key, hdr envelope.Header) ContentCheck {
	if hdr.Encrypted() || k.Kind != KindWAL || (k.WAL.Kind != wal.Segment && k.WAL.Kind != wal.Partial) {
		return nil
	}
	return &segmentCheck{wal.NewSegmentChecker(k.WAL, hdr.RawSize, hdr.SystemID)}
}

type segmentCheck struct{ c *wal.SegmentChecker }

func (s *segmentCheck) Write(p []byte) (int, error) { return s.c.Write(p) }

func (s *segmentCheck) Close() error {
	_, err := s.c.Close()
	return err
}

// NeedsContent reports whether the door checks the decoded content of
// an object under k (small objects it can read: not encrypted).
func NeedsContent(k Key, hdr envelope.Header) bool {
	if hdr.Encrypted() {
		return false
	}
	return k.Kind == KindSystem || k.Kind == KindLabelCopy || k.Kind == KindWAL && (k.WAL.Kind == wal.History || k.WAL.Kind == wal.Backup)
}

// CheckContent checks the raw content of a history file or backup label
// at the door: it must parse, match its name, and a history file must
// extend its parent's history as the archive holds it (a parent timeline
// the archive does not have is refused, naming it).
func (d *Rules) CheckContent(ctx context.Context, k Key, hdr envelope.Header, raw []byte) error {
	if k.Kind == KindSystem {
		if strconv.FormatUint(hdr.SystemID, 10)+"\n" != string(raw) {
			return fmt.Errorf("%w: %s does not hold the system identifier of its header", errkind.ErrInvalid, k.Archive+"/meta/system")
		}
		return nil
	}
	n := k.WAL
	switch {
	case n.Kind == wal.Backup:
		l, err := wal.ParseBackupLabel(raw)
		if err == nil {
			err = wal.CheckBackupFile(n, l)
		}
		if err == nil && l.StopLSN == 0 {
			err = fmt.Errorf("%w: no STOP WAL LOCATION", errkind.ErrInvalid)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	case n.Kind == wal.History:
		hist, err := wal.ParseHistory(n.TLI, raw)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		return d.checkParents(ctx, k.Archive, n.TLI, hist)
	}
	return nil
}

// checkParents: the history of tli lists its ancestors; the last one is
// its parent. A parent other than timeline 1 must have its own history in
// the archive, and tli's history must repeat it line for line.
func (d *Rules) checkParents(ctx context.Context, archiveName string, tli uint32, hist []wal.HistoryEntry) error {
	parent := hist[len(hist)-1].TLI
	if parent == 1 {
		if len(hist) != 1 {
			return fmt.Errorf("%w: %08X.history names timeline 1 as its parent but lists %d ancestors", errkind.ErrInvalid, tli, len(hist))
		}
		return nil
	}
	a, err := d.Archive(archiveName)
	if err != nil {
		return err
	}
	ph, err := a.History(ctx, parent) // a retired parent: its stand-in
	if errors.Is(err, errkind.ErrNotFound) {
		return fmt.Errorf("%w: %08X.history names parent timeline %d, whose history %08X.history archive %s does not have (push it first: it is in pg_wal)", errkind.ErrInvalid, tli, parent, parent, archiveName)
	}
	if errors.Is(err, errkind.ErrKey) {
		return nil // an encrypted archive: the client checked
	}
	if err != nil {
		return fmt.Errorf("the archive's %08X.history: %w", parent, err)
	}
	if len(ph) != len(hist)-1 {
		return fmt.Errorf("%w: %08X.history does not extend its parent %08X.history (%d ancestors, the parent has %d)", errkind.ErrInvalid, tli, parent, len(hist)-1, len(ph))
	}
	for i, e := range ph {
		if hist[i].TLI != e.TLI || hist[i].SwitchPoint != e.SwitchPoint {
			return fmt.Errorf("%w: %08X.history disagrees with its parent %08X.history at line %d", errkind.ErrInvalid, tli, parent, i+1)
		}
	}
	return nil
}

// Decode returns the raw content of a small envelope held in memory,
// verified (for CheckContent).
func Decode(obj []byte, limit int64) ([]byte, error) {
	_, rc, err := envelope.Open(bytes.NewReader(obj), "", nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit+1))
}
