// Package recompress makes a repository smaller at rest without making
// pushes slower: walpush stores WAL at zstd's fastest level without an
// entropy stage (envelope.Fast), which keeps archive_command well ahead
// of PostgreSQL; on the storage host, in its idle time, a recompression
// pass re-encodes the objects at envelope.Small (zstd's default level,
// about level 3), which stores real WAL in about a quarter less space
// and decodes as fast.
//
// The write-once rule stays: a name's raw content never changes, only
// its encoding, and only to one that was checked. For each object the
// pass reads the stored envelope, decodes it (which verifies the raw
// SHA-256 the header promises), encodes the raw bytes again bound to the
// same name and system, checks that the new envelope carries the same raw
// digest and decodes to it, and only then replaces the stored copy with
// store.Replacer: atomically (a rename over the old file, a PUT with
// If-Match on the old ETag) and only if the stored copy is still the one
// that was read. A reader in the middle of a fetch finishes on the copy it
// opened (the old inode, the object version it is streaming); a pass
// killed at any point leaves every object either in its old or its new
// encoding, both whole and verified.
//
// What a pass touches: WAL segments and backup parts older than MinAge
// (and, with MaxAge, younger than that: a daily pass need not look at the
// whole repository again) that were written at the Fast level (recognised from the zstd frame:
// Fast writes every block's literals raw; see fastEncoded), never an
// encrypted object (the storage host holds no key), never an archive's
// newest segment (its time is the archive's "last archived" for the
// status page and the late alert, and an S3 store gives a replaced object
// a new time). A pass holds each archive's retention lease while it works
// on it, so retention and recompression never interleave. It stops
// between objects when its context ends, and can be limited to a rate of
// bytes read per second; run it from a timer with a low CPU and I/O
// priority (walstored recompress; the README's systemd unit).
package recompress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Options say what a pass does.
type Options struct {
	// Archives to work on; empty: every archive of the repository.
	Archives []string
	// MinAge: objects written more recently are left for a later pass
	// (the ones standbys are reading now). Default 1 hour.
	MinAge time.Duration
	// MaxAge: objects written longer ago are left alone (0: none is), so
	// that a daily pass looks at the last days' objects only instead of
	// the whole repository every night; a pass without it catches up.
	MaxAge time.Duration
	// Rate bounds the bytes read per second (0: no bound).
	Rate int64
	// DryRun measures what a pass would save without replacing anything.
	DryRun bool
	Log    *slog.Logger
	// beforeReplace, when set (tests), runs between the checks and the
	// replacement of each object.
	beforeReplace func(key string)
}

// Report is what a pass did.
type Report struct {
	Archives     []string `json:"archives"`
	Busy         []string `json:"archives_busy"` // skipped: retention held their lease
	Objects      int      `json:"objects_seen"`
	Recompressed int      `json:"objects_recompressed"`
	AlreadySmall int      `json:"objects_already_small"`
	Encrypted    int      `json:"objects_encrypted_skipped"`
	TooYoung     int      `json:"objects_too_young"`
	TooOld       int      `json:"objects_older_than_max_age"`
	Changed      int      `json:"objects_changed_meanwhile"`
	Corrupt      []string `json:"corrupt"` // stored copies that do not verify (left as is)
	// BytesBefore and BytesAfter are the stored sizes of the objects
	// recompressed, before and after; RawBytes what they decode to.
	BytesBefore int64   `json:"bytes_before"`
	BytesAfter  int64   `json:"bytes_after"`
	RawBytes    int64   `json:"raw_bytes"`
	Seconds     float64 `json:"seconds"`
	DryRun      bool    `json:"dry_run"`
	Stopped     bool    `json:"stopped"` // the context ended before the pass did
}

// Saved is the number of stored bytes the pass freed.
func (r Report) Saved() int64 { return r.BytesBefore - r.BytesAfter }

// Run makes one recompression pass over the repository in s (the stores
// themselves, not a walstored: the pass replaces objects in place).
func Run(ctx context.Context, s store.Store, opt Options) (Report, error) {
	start := time.Now()
	rep := Report{Archives: []string{}, Busy: []string{}, Corrupt: []string{}, DryRun: opt.DryRun}
	if opt.MinAge <= 0 {
		opt.MinAge = time.Hour
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if _, ok := store.As[store.Replacer](s); !ok && !opt.DryRun {
		return rep, fmt.Errorf("%w: %s cannot replace objects in place", errkind.ErrConfig, store.Describe(s))
	}
	all, err := archive.Archives(ctx, s)
	if err != nil {
		return rep, err
	}
	names := opt.Archives
	if len(names) == 0 {
		names = all
	}
	for _, n := range names {
		// A misspelt --archive is an error, not a pass that found nothing.
		if err := archive.ValidArchiveName(n); err != nil {
			return rep, err
		}
		if !slices.Contains(all, n) {
			return rep, fmt.Errorf("%w: archive %s does not exist in %s (its archives: %s)", errkind.ErrNotFound, n, store.Describe(s), strings.Join(all, ", "))
		}
	}
	p := &pass{s: s, opt: opt, rep: &rep, limit: newLimiter(opt.Rate), enc: envelope.NewEncoderLevel(envelope.Small)}
	for _, name := range names {
		err = p.archive(ctx, name)
		if errors.Is(err, archive.ErrBusy) {
			// Retention (or another pass) works on it: next time.
			rep.Busy = append(rep.Busy, name)
			p.opt.Log.Info("archive skipped: its retention lease is held", "archive", name, "reason", err.Error())
			err = nil
			continue
		}
		if err != nil {
			break
		}
		rep.Archives = append(rep.Archives, name)
	}
	rep.Seconds = time.Since(start).Seconds()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		rep.Stopped, err = true, nil
	}
	return rep, err
}

// probeBytes of an object's payload decide whether it was written at the
// Fast level (the first compressed blocks are in it).
const probeBytes = 256 << 10

// leaseTTL is how long a pass holds an archive's retention lease at a time.
const leaseTTL = 10 * time.Minute

type pass struct {
	s     store.Store
	opt   Options
	rep   *Report
	limit *limiter
	enc   *envelope.Encoder
}

// archive recompresses one archive's old WAL segments and backup parts
// under its retention lease.
func (p *pass) archive(ctx context.Context, name string) error {
	a, err := archive.New(p.s, name)
	if err != nil {
		return err
	}
	// The retention lease, held for leaseTTL and taken again every
	// leaseTTL/2, so that a pass that died on another host blocks
	// retention for minutes, not for the pass's whole --timeout.
	var lease *archive.Lease
	take := func() error {
		if p.opt.DryRun {
			return nil
		}
		if lease != nil {
			lease.Release(context.WithoutCancel(ctx))
		}
		lease, err = archive.TakeLease(ctx, p.s, a.Layout.Lease("retain"), "recompression of archive "+name, leaseTTL)
		return err
	}
	if err := take(); err != nil {
		return err
	}
	defer func() {
		if lease != nil {
			lease.Release(context.WithoutCancel(ctx))
		}
	}()
	var cands []store.Info
	var newest wal.Name
	cutoff := time.Now().Add(-p.opt.MinAge)
	err = p.s.List(ctx, a.Layout.Prefix(), func(info store.Info) error {
		k, err := archive.ParseKey(info.Key)
		if err != nil {
			return nil // not ours to judge (verify reports strays)
		}
		seg := k.Kind == archive.KindWAL && k.WAL.Kind == wal.Segment
		part := k.Kind == archive.KindBackup && strings.HasPrefix(k.File, archive.PartPrefix) || k.Kind == archive.KindPack
		if !seg && !part {
			return nil
		}
		p.rep.Objects++
		if seg && (newest.Kind == 0 || k.WAL.String() > newest.String()) {
			newest = k.WAL
		}
		if info.ModTime.After(cutoff) {
			p.rep.TooYoung++
			return nil
		}
		if p.opt.MaxAge > 0 && info.ModTime.Before(time.Now().Add(-p.opt.MaxAge)) {
			p.rep.TooOld++
			return nil
		}
		cands = append(cands, info)
		return nil
	})
	if err != nil {
		return err
	}
	before := *p.rep
	started := time.Now()
	defer func() {
		// What this pass saved in the archive, for walstored archives, the
		// status page and the metrics (also when it was stopped midway).
		run := archive.RecompressRun{
			Archive: name, RanAt: started.UTC(), Seconds: time.Since(started).Seconds(),
			Recompressed: p.rep.Recompressed - before.Recompressed,
			BytesBefore:  p.rep.BytesBefore - before.BytesBefore,
			BytesAfter:   p.rep.BytesAfter - before.BytesAfter,
			RawBytes:     p.rep.RawBytes - before.RawBytes,
		}
		run.ID = fmt.Sprintf("%s-%09d", archive.NewBackupID(started), started.Nanosecond())
		if p.opt.DryRun || run.Recompressed == 0 {
			return
		}
		if err := a.PutRecompressRun(context.WithoutCancel(ctx), run); err != nil {
			p.opt.Log.Warn("could not record the pass", "archive", name, "error", err.Error())
		}
	}()
	for _, info := range cands {
		if err := ctx.Err(); err != nil {
			return err
		}
		if lease != nil && time.Since(lease.Acquired) > leaseTTL/2 {
			if err := take(); err != nil {
				return err // retention took its turn: this archive waits for the next pass
			}
		}
		if k, _ := archive.ParseKey(info.Key); k.Kind == archive.KindWAL && k.WAL == newest {
			p.rep.TooYoung++ // the archive's newest segment keeps its time
			continue
		}
		if err := p.object(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// object recompresses one object if it was written at the Fast level
// and the Small encoding is smaller.
func (p *pass) object(ctx context.Context, info store.Info) error {
	p.limit.wait(ctx)
	// The version the replacement is conditional on: taken before the
	// read, so that a copy replaced in between is never overwritten.
	cur, err := p.s.Stat(ctx, info.Key)
	if errors.Is(err, errkind.ErrNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	// The header and the first blocks tell whether there is work: an
	// object already small is not read further.
	rc, err := p.s.Get(ctx, info.Key)
	if errors.Is(err, errkind.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	// One buffer of the object's size: no growing and copying of
	// megabytes per object.
	buf := make([]byte, min(cur.Size, envelope.MaxObjectSize))
	n, err := io.ReadFull(rc, buf[:min(int64(len(buf)), envelope.MaxHeaderSize+probeBytes)])
	p.limit.add(n)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	head := buf[:n]
	hdr, err := envelope.ParseHeader(head)
	if err != nil {
		return fmt.Errorf("%s: %w", info.Key, err)
	}
	if hdr.Encrypted() {
		p.rep.Encrypted++
		return nil
	}
	fast, decided := false, false
	if first := firstFrame(head[min(int64(len(head)), hdr.Size()):]); first != nil {
		fast, decided = literalsCoding(first)
	}
	if hdr.Compression == envelope.Zstd && decided && !fast {
		p.rep.AlreadySmall++
		return nil
	}
	m, err := io.ReadFull(rc, buf[n:])
	p.limit.add(m)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	buf = buf[:n+m]
	if extra, _ := rc.Read(make([]byte, 1)); extra > 0 || int64(len(buf)) != cur.Size {
		p.rep.Changed++ // not the copy stat saw: the next pass looks again
		return nil
	}
	if hdr.Compression == envelope.Zstd && !decided && !fastEncoded(firstFrame(buf[hdr.Size():])) {
		p.rep.AlreadySmall++
		return nil
	}
	raw, err := decodeSized(buf, info.Key, hdr.RawSize)
	if _, oerr := envelope.NewObject(buf); oerr != nil && err == nil {
		err = oerr
	}
	if errors.Is(err, errkind.ErrCorrupt) {
		// Left as is, for verify to report and a push of the same
		// content to repair; the pass goes on.
		p.rep.Corrupt = append(p.rep.Corrupt, info.Key)
		p.opt.Log.Error("a stored copy does not verify; left as is", "key", info.Key, "error", err.Error())
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", info.Key, err)
	}
	p.enc.SystemID = hdr.SystemID
	// A framed object (a backup's pack) keeps its frames, so that it can
	// still be read in part; the digest is computed again, not copied.
	var obj *envelope.Object
	if frames, _, ferr := envelope.Frames(hdr, buf[hdr.Size():]); ferr == nil {
		obj, err = p.enc.EncodeFramesSum(raw, envelope.FrameSizes(frames), sha256.Sum256(raw), info.Key)
	} else {
		obj, err = p.enc.EncodeBytes(raw, info.Key)
	}
	if err != nil {
		return err
	}
	if obj.Header.Digest != hdr.Digest {
		return fmt.Errorf("%s: the new encoding holds other content (%s, stored %s): not replaced", info.Key, obj.Header.Digest.Short(), hdr.Digest.Short())
	}
	if err := check(obj.Bytes(), info.Key); err != nil {
		return fmt.Errorf("%s: the new encoding does not decode: not replaced: %w", info.Key, err)
	}
	if obj.Size() >= int64(len(buf)) {
		p.rep.AlreadySmall++
		return nil
	}
	if p.opt.beforeReplace != nil {
		p.opt.beforeReplace(info.Key)
	}
	if !p.opt.DryRun {
		r, _ := store.As[store.Replacer](p.s)
		err = r.Replace(ctx, info.Key, cur, store.Bytes(obj.Bytes()))
		if errors.Is(err, errkind.ErrConflict) || errors.Is(err, errkind.ErrNotFound) {
			p.rep.Changed++ // replaced or deleted meanwhile: left to the next pass
			return nil
		}
		if err != nil {
			return fmt.Errorf("replace %s: %w", info.Key, err)
		}
	}
	p.rep.Recompressed++
	p.rep.BytesBefore += int64(len(buf))
	p.rep.BytesAfter += obj.Size()
	p.rep.RawBytes += hdr.RawSize
	p.opt.Log.Debug("recompressed", "key", info.Key, "before", len(buf), "after", obj.Size())
	return nil
}

// firstFrame is a payload past its frame index, if it has one (nil when
// p ends inside the index: nothing is decided from it).
func firstFrame(p []byte) []byte {
	n := envelope.IndexSize(p)
	if n > len(p) {
		return nil
	}
	return p[n:]
}

// readAll reads a whole stored object (at most one envelope's worth).
func readAll(ctx context.Context, s store.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, envelope.MaxObjectSize+1))
	if err == nil && int64(len(b)) > envelope.MaxObjectSize {
		err = fmt.Errorf("%w: %s is larger than any envelope", errkind.ErrCorrupt, key)
	}
	return b, err
}

// decode checks an envelope bound to key and returns its raw bytes.
func decode(buf []byte, key string) ([]byte, error) {
	_, rc, err := envelope.Open(bytes.NewReader(buf), key, nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// decodeSized is decode into one buffer of the raw size the header
// promises (which the reader enforces): no growing and copying.
func decodeSized(buf []byte, key string, size int64) ([]byte, error) {
	_, rc, err := envelope.Open(bytes.NewReader(buf), key, nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw := make([]byte, size)
	if _, err := io.ReadFull(rc, raw); err != nil {
		return nil, err
	}
	// The end: the reader checks the length and the SHA-256 there.
	if n, err := rc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%w: %s decodes to more than its header says", errkind.ErrCorrupt, key)
		}
		return nil, err
	}
	return raw, nil
}

// check verifies an envelope bound to key without keeping its bytes.
func check(buf []byte, key string) error {
	_, rc, err := envelope.Open(bytes.NewReader(buf), key, nil)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// limiter paces reads to a rate in bytes per second.
type limiter struct {
	rate  int64
	start time.Time
	done  int64
}

func newLimiter(rate int64) *limiter { return &limiter{rate: rate, start: time.Now()} }

// add accounts n bytes read.
func (l *limiter) add(n int) { l.done += int64(n) }

// wait sleeps until the bytes read so far keep within the rate.
func (l *limiter) wait(ctx context.Context) {
	if l.rate <= 0 {
		return
	}
	due := l.start.Add(time.Duration(float64(l.done) / float64(l.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}
