// Package receiver streams WAL from a PostgreSQL cluster into an archive
// over the physical replication protocol, as a standby would: what
// archive_command alone cannot give, the WAL of the segment still being
// written.
//
// It runs inside walstored serve, per archive (walstored serve --receive),
// because the segment being received must be served from where it is
// durable: a restore after the loss of the primary fetches it through the
// same walstored. The receiver:
//
//   - connects to the first of its connection strings that answers as a
//     primary of the archive's system (a standby if none does), with a
//     physical replication slot (created when asked);
//   - writes what it receives into a local file per segment in its
//     directory, fsyncs it and only then reports the flush position, so
//     that it can be named in synchronous_standby_names: a commit that
//     returned is in walstored's reach;
//   - publishes each complete segment into the archive through walstored's
//     door, encoded like walpush encodes it: its raw SHA-256 is the
//     primary's file's, so whichever of walpush and the receiver stores it
//     second gets "already archived", never a conflict;
//   - follows a promotion (a new primary among its connection strings, or
//     the end of a timeline on the one it streams from): fetches the new
//     timeline's history file, keeps the old timeline's last segment as a
//     local partial and goes on at the switch point;
//   - restarts from its slot, at the start of the segment the slot holds,
//     so nothing is skipped; a slot that PostgreSQL invalidated
//     (max_slot_wal_keep_size) is reported loudly and never silently
//     replaced by one that starts later.
//
// The segment being received (and an old timeline's last one) stays a
// local file: it is served, zero-padded like pg_receivewal's .partial
// files, to walfetch in archive recovery only, never stored under a WAL
// name, because a promoted server archives its own copy of that
// segment as <name>.partial, whose tail need not match.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// Options configure a receiver.
type Options struct {
	// Archive is the archive the WAL belongs to (for its system binding).
	Archive *archive.Archive
	// ConnInfos are the clusters to stream from: libpq keyword/value
	// strings or URLs, tried in order (a primary first).
	ConnInfos []string
	// Slot is the physical replication slot (default walstore_<archive>).
	Slot string
	// CreateSlot creates the slot where it does not exist.
	CreateSlot bool
	// Dir is where the segments being received are kept (durable).
	Dir string
	// AppName is the application_name PostgreSQL sees (for
	// synchronous_standby_names), unless the connection string sets one.
	// Default "walstored".
	AppName string
	// Publish stores a WAL file in the archive (walstored's door).
	Publish func(ctx context.Context, n wal.Name, obj *envelope.Object) (archive.Outcome, error)
	Log     *slog.Logger
	// Retry is the pause before connecting again after a failure
	// (default 1 s, growing to 10 s).
	Retry time.Duration
}

// Status is what the receiver is doing, for metrics and logs.
type Status struct {
	Archive      string    `json:"archive"`
	Connected    bool      `json:"connected"`
	Server       string    `json:"server"` // host:port streamed from
	Timeline     uint32    `json:"timeline"`
	Received     wal.LSN   `json:"received_lsn"`
	Flushed      wal.LSN   `json:"flushed_lsn"`
	ServerEnd    wal.LSN   `json:"server_wal_end"`
	LastMessage  time.Time `json:"last_message"`
	ServerTime   time.Time `json:"server_time"` // the primary's clock in its last message
	SlotState    string    `json:"slot_state"`  // ok, created, missing, invalidated
	Published    int64     `json:"segments_published"`
	AlreadyThere int64     `json:"segments_already_archived"`
	Conflicts    int64     `json:"conflicts"`
	LastError    string    `json:"last_error"`
}

// Receiver streams one archive's WAL.
type Receiver struct {
	opt Options
	log *slog.Logger

	mu     sync.Mutex
	st     Status
	files  map[wal.Name]string // local files: complete segments not yet published, partials
	wake   chan struct{}       // a complete segment waits for the publisher
	segSz  int64
	sysid  uint64
	curSeg wal.Name // the segment being received (its file is a partial)
	cur    current  // its open file (the session's goroutine only)
}

// New checks the options and returns a receiver; Run starts it.
func New(opt Options) (*Receiver, error) {
	if opt.Archive == nil || opt.Publish == nil || len(opt.ConnInfos) == 0 {
		return nil, fmt.Errorf("%w: receiver: archive, publisher and a connection string are required", errkind.ErrInvalid)
	}
	if opt.Slot == "" {
		opt.Slot = DefaultSlot(opt.Archive.Name)
	}
	if err := validSlot(opt.Slot); err != nil {
		return nil, err
	}
	if opt.AppName == "" {
		opt.AppName = "walstored"
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Retry <= 0 {
		opt.Retry = time.Second
	}
	if opt.Dir == "" {
		return nil, fmt.Errorf("%w: receiver: a directory for the segments being received is required", errkind.ErrInvalid)
	}
	opt.Dir = filepath.Join(opt.Dir, opt.Archive.Name)
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: receiver directory: %v", errkind.ErrConfig, err)
	}
	r := &Receiver{opt: opt, log: opt.Log.With("archive", opt.Archive.Name, "receiver", true),
		files: map[wal.Name]string{}, wake: make(chan struct{}, 1)}
	r.st.Archive = opt.Archive.Name
	if err := r.scanDir(); err != nil {
		return nil, err
	}
	return r, nil
}

// DefaultSlot is the slot name for an archive: walstore_<archive>, with
// what a slot name may not hold replaced by '_'.
func DefaultSlot(archiveName string) string {
	var b strings.Builder
	b.WriteString("walstore_")
	for _, c := range strings.ToLower(archiveName) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func validSlot(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("%w: replication slot name %q: 1 to 63 characters", errkind.ErrInvalid, s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: replication slot name %q: lower-case letters, digits and _ only", errkind.ErrInvalid, s)
		}
	}
	return nil
}

// Status returns the receiver's state now.
func (r *Receiver) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

func (r *Receiver) setStatus(f func(*Status)) {
	r.mu.Lock()
	f(&r.st)
	r.mu.Unlock()
}

// Local file names: <WAL name> for a complete segment waiting to be
// published, <WAL name>.partial for one being received or left by a
// timeline switch.
const partialSuffix = ".partial"

// scanDir learns the local files left by an earlier run.
func (r *Receiver) scanDir() error {
	ents, err := os.ReadDir(r.opt.Dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			os.Remove(filepath.Join(r.opt.Dir, name)) // an unfinished temporary file
			continue
		}
		n, err := wal.ParseName(strings.TrimSuffix(name, partialSuffix))
		if err != nil || n.Kind != wal.Segment {
			continue
		}
		r.files[n] = filepath.Join(r.opt.Dir, name)
	}
	return nil
}

// Run receives until ctx ends: connects, streams, and on any failure
// connects again after a pause. A complete segment is published by a
// goroutine of its own, so a slow store never holds back the stream.
func (r *Receiver) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.publisher(ctx) })
	defer wg.Wait()
	pause := r.opt.Retry
	for ctx.Err() == nil {
		err := r.session(ctx)
		if ctx.Err() != nil {
			break
		}
		r.setStatus(func(s *Status) {
			s.Connected = false
			if err != nil {
				s.LastError = err.Error()
			}
		})
		if err != nil {
			lvl := slog.LevelWarn
			if errors.Is(err, ErrSlotInvalidated) {
				lvl = slog.LevelError
			}
			r.log.Log(ctx, lvl, "WAL receiver stopped; connecting again", "error", err.Error(), "in", pause.String())
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
		if err == nil {
			pause = r.opt.Retry
		}
	}
	return nil
}

// ErrSlotInvalidated: PostgreSQL dropped the WAL the slot held
// (max_slot_wal_keep_size): the archive will have a gap unless
// archive_command has it.
var ErrSlotInvalidated = errors.New("replication slot invalidated")

// publisher stores complete segments, oldest first.
func (r *Receiver) publisher(ctx context.Context) {
	for {
		for {
			n, path, ok := r.nextComplete()
			if !ok {
				break
			}
			if err := r.publish(ctx, n, path); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("could not store a received segment; trying again", "segment", n.String(), "error", err.Error())
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
	}
}

func (r *Receiver) nextComplete() (wal.Name, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []wal.Name
	for n, p := range r.files {
		if !strings.HasSuffix(p, partialSuffix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return wal.Name{}, "", false
	}
	sort.Slice(names, func(i, j int) bool { return wal.Compare(names[i], names[j]) < 0 })
	return names[0], r.files[names[0]], true
}

// publish stores one complete segment and forgets the local copy.
func (r *Receiver) publish(ctx context.Context, n wal.Name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr, err := wal.ReadPageHeader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	if err := wal.CheckSegment(n, fi.Size(), hdr); err != nil {
		return err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	enc := r.opt.Archive.Encoder()
	enc.SystemID = hdr.SystemID
	obj, err := r.opt.Archive.EncodeWAL(enc, f, fi.Size(), n)
	if err != nil {
		return err
	}
	out, err := r.opt.Publish(ctx, n, obj)
	var ce *archive.ConflictError
	switch {
	case errors.As(err, &ce):
		// Never overwritten: the local copy is kept for whoever looks.
		r.setStatus(func(s *Status) { s.Conflicts++ })
		r.log.Error("a received segment differs from the one in the archive: kept aside, not stored", "segment", n.String(), "error", err.Error())
		os.Rename(path, path+".conflict")
	case err != nil:
		return err
	case out == archive.AlreadyStored:
		r.setStatus(func(s *Status) { s.AlreadyThere++ })
		r.log.Debug("received segment already archived", "segment", n.String())
		os.Remove(path)
	default:
		r.setStatus(func(s *Status) { s.Published++ })
		r.log.Info("stored received segment", "segment", n.String(), "sha256", obj.Header.Digest.Short())
		os.Remove(path)
	}
	r.mu.Lock()
	delete(r.files, n)
	// An older timeline's partial of the same position is no longer the
	// newest WAL of anything a restore needs once a later segment is in.
	for m, p := range r.files {
		if strings.HasSuffix(p, partialSuffix) && m.TLI < n.TLI && m.SegNo(r.segSizeLocked(n)) < n.SegNo(r.segSizeLocked(n)) {
			os.Remove(p)
			delete(r.files, m)
		}
	}
	r.mu.Unlock()
	return nil
}

func (r *Receiver) segSizeLocked(n wal.Name) int64 {
	if r.segSz > 0 {
		return r.segSz
	}
	return 16 << 20
}

// Received returns what the receiver holds of WAL file n that the
// archive may not have yet: a complete segment waiting to be stored, or
// (when partial) the segment being received, zero-padded to its size.
func (r *Receiver) Received(n wal.Name, partial bool) (*envelope.Object, error) {
	if n.Kind != wal.Segment {
		return nil, errkind.ErrNotFound
	}
	r.mu.Lock()
	path, ok := r.files[n]
	r.mu.Unlock()
	if !ok || strings.HasSuffix(path, partialSuffix) && !partial {
		return nil, errkind.ErrNotFound
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, errkind.ErrNotFound // published meanwhile
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	hdr, err := wal.ReadPageHeader(f)
	if err != nil {
		return nil, errkind.ErrNotFound // nothing received into it yet
	}
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	enc := r.opt.Archive.Encoder()
	enc.SystemID = hdr.SystemID
	return r.opt.Archive.EncodeWAL(enc, f, fi.Size(), n)
}
