package backupset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/freelist"
)

// write is one block to write: from a pack to a file.
type write struct {
	path    string
	fileOff int64
	packOff int64
	n       int
	sum     string // the block's SHA-256, hex
}

// unpackBlocks restores a backup in blocks: the directories and files
// are made first (each file at its size), then Jobs workers each fetch a
// whole pack, check it against its name, and write its blocks where they
// belong, so that fetching, decoding and writing overlap across packs.
// With delta, a file's blocks that already hold the right content are
// neither fetched nor written.
func unpackBlocks(ctx context.Context, opt RestoreOptions, rec archive.Record, c archive.Contents, mapping map[string]string, delta *deltaState) error {
	a := opt.Archive
	byPack := map[int][]write{}
	var total int64
	files := 0
	type fileJob struct {
		e        archive.Entry
		dst, rel string
		need     []bool
		changed  bool
	}
	var todo []fileJob
	for _, e := range c.Entries {
		rel, err := SafePath(e.Path)
		if err != nil {
			return err
		}
		dst := filepath.Join(opt.PGData, rel)
		if e.Link != "" {
			// The tablespace's directory (checked by placeTablespaces:
			// empty, or this cluster's with delta), and the link
			// PostgreSQL follows.
			target := tablespaceTarget(e.Link, mapping)
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			if delta != nil {
				delta.seen[rel], delta.links[rel] = true, target
				if to, err := os.Readlink(dst); err == nil && to == target {
					continue
				}
				if err := os.RemoveAll(dst); err != nil {
					return err
				}
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			continue
		}
		if e.Dir {
			if delta != nil {
				if fi, err := os.Lstat(dst); err == nil && !fi.IsDir() {
					os.Remove(dst)
				}
			}
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return err
			}
			continue
		}
		files++
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if delta != nil {
			delta.seen[rel] = true
		}
		todo = append(todo, fileJob{e: e, dst: dst, rel: rel})
	}
	// The files are made (or, with delta, compared block by block) by
	// Jobs workers: comparing hashes every block of the old files.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Jobs)
	for i := range todo {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			var err error
			todo[i].need, todo[i].changed, err = prepareFile(todo[i].dst, todo[i].e, delta != nil)
			if err != nil {
				return fmt.Errorf("%s: %w", todo[i].rel, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, j := range todo {
		switch {
		case delta == nil:
		case j.changed:
			delta.Written++
		default:
			delta.Kept++
		}
		var off int64
		for i, b := range j.e.Blocks {
			if j.need == nil || j.need[i] {
				byPack[b.Pack] = append(byPack[b.Pack], write{path: j.dst, fileOff: off, packOff: b.Off, n: b.Len, sum: b.SHA256})
				total += int64(b.Len)
			}
			off += int64(b.Len)
		}
	}
	if files != rec.Files {
		return fmt.Errorf("%w: the contents list %d files, the backup has %d", errkind.ErrCorrupt, files, rec.Files)
	}
	if delta != nil {
		delta.Bytes = total
	}
	prog := NewProgress(opt.Out, opt.Terminal, "restore "+rec.ID, total)
	defer prog.Stop()
	packs := make([]int, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	sort.Ints(packs)
	var fetched, inPart atomic.Int64
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(opt.Jobs)
	for _, p := range packs {
		g.Go(func() error {
			ws := byPack[p]
			// A pack of which little is needed (a delta restore, a
			// backup using a few blocks of an older pack) is read in
			// part when it is framed; else, or when the part is not
			// what it should be, whole.
			if inPartWorthIt(ws, delta != nil) {
				n, done, err := readFramed(gctx, a, c.Packs[p], ws, prog)
				fetched.Add(n)
				if err == nil {
					inPart.Add(1)
					return nil
				}
				if gctx.Err() != nil {
					return gctx.Err()
				}
				// Whatever went wrong reading in part (not framed, an
				// older walstored, a part that does not check), the
				// whole read checks the pack against its name, and
				// reports damage; it writes what is left.
				var rest []write
				for i, w := range ws {
					if !done[i] {
						rest = append(rest, w)
					}
				}
				ws = rest
			}
			bp := PackPool.Get()
			defer PackPool.Put(bp)
			data, n, err := fetchBlocks(gctx, a, c.Packs[p], bp, ws)
			if err != nil {
				return err
			}
			fetched.Add(n)
			return writeBlocks(data, 0, ws, prog)
		})
	}
	err := g.Wait()
	if delta != nil {
		delta.Fetched, delta.PacksInPart, delta.Packs = fetched.Load(), int(inPart.Load()), len(packs)
	}
	return err
}

// errWhole says a pack is to be read whole.
var errWhole = errors.New("read whole")

// inPartWorthIt says whether to read the blocks ws of a pack in part:
// when they are less than half of it. A pack's size is not known before
// its header is read: a delta restore (which needs few blocks of any
// pack) tries when they are less than half of the largest pack; a full
// one when they are less than half of what lies before the last of them
// (a pack this backup wrote is needed whole, one an earlier backup wrote
// may be needed in part).
func inPartWorthIt(ws []write, delta bool) bool {
	var need, span int64
	for _, w := range ws {
		need += int64(w.n)
		span = max(span, w.packOff+int64(w.n))
	}
	if delta {
		return need < PackSize/2
	}
	return need < span/2
}

// readFramed writes the blocks ws of a framed pack, reading it in part:
// its header and frame index, then only the frames holding those blocks
// (adjacent ones in one read, up to maxRun), each decoded into a small
// kept buffer, its blocks checked against their SHA-256 and written. It
// returns the bytes read, and on error which blocks were written (the
// caller writes the others from the whole pack).
func readFramed(ctx context.Context, a *archive.Archive, id string, ws []write, prog *Progress) (read int64, done []bool, err error) {
	done = make([]bool, len(ws))
	key := a.Layout.Pack(id)
	hdr, frames, err := a.Frames(ctx, key)
	if err != nil {
		return 0, done, err
	}
	if hdr.Digest.String() != id {
		return 0, done, fmt.Errorf("%w: pack %s holds content %s", errkind.ErrCorrupt, id[:12], hdr.Digest.Short())
	}
	if len(frames) == 0 {
		return 0, done, fmt.Errorf("%w: pack %s has no frames", errWhole, id[:12])
	}
	// The blocks of each frame (a block is never split across frames).
	inFrame := make([][]int, len(frames))
	for k, w := range ws {
		i := sort.Search(len(frames), func(i int) bool { return frames[i].RawOff+frames[i].RawLen > w.packOff })
		if i == len(frames) || w.packOff < frames[i].RawOff || w.packOff+int64(w.n) > frames[i].RawOff+frames[i].RawLen || frames[i].RawLen > maxFrame {
			return 0, done, fmt.Errorf("%w: a block at %d of pack %s lies across its frames", errWhole, w.packOff, id[:12])
		}
		inFrame[i] = append(inFrame[i], k)
	}
	zp, rp := framePool.Get(), framePool.Get()
	defer framePool.Put(zp)
	defer framePool.Put(rp)
	read = hdr.Size() + frames[0].Off // the header and the index
	for i := 0; i < len(frames); {
		if inFrame[i] == nil {
			i++
			continue
		}
		j := i
		for j+1 < len(frames) && inFrame[j+1] != nil && j+1-i < maxRun {
			j++
		}
		z, err := a.ReadFrames(ctx, key, hdr, frames[i], frames[j], (*zp)[:0])
		if err != nil {
			return read, done, err
		}
		*zp = z[:0]
		read += int64(len(z))
		for k := i; k <= j; k++ {
			f := frames[k]
			raw, err := envelope.DecodeFrame((*rp)[:0], z[f.Off-frames[i].Off:f.Off-frames[i].Off+f.Len], f)
			if err != nil {
				return read, done, fmt.Errorf("pack %s: %w", id[:12], err)
			}
			part := make([]write, 0, len(inFrame[k]))
			for _, b := range inFrame[k] {
				part = append(part, ws[b])
			}
			if err := checkBlocks(raw, f.RawOff, part, id); err != nil {
				return read, done, err
			}
			if err := writeBlocks(raw, f.RawOff, part, prog); err != nil {
				return read, done, err
			}
			for _, b := range inFrame[k] {
				done[b] = true
			}
		}
		i = j + 1
	}
	return read, done, nil
}

// A frame holds at most maxFrame bytes of content (whole blocks up to
// 512 KiB); a read takes at most maxRun adjacent frames. framePool keeps
// the buffers frames are read and decoded into, one each per pack in
// flight: fresh buffers cost a page fault per 4 KiB.
const (
	maxFrame = 512 << 10
	maxRun   = 8
)

var framePool = freelist.New(16, maxRun*(maxFrame+maxFrame/64+1024))

// prepareFile makes the file at dst the entry's size and returns which of
// its blocks must be written (nil: all, a new file). With delta, an
// existing file keeps the blocks whose content already matches; changed
// says whether anything of it differs.
func prepareFile(dst string, e archive.Entry, delta bool) (need []bool, changed bool, err error) {
	if !delta {
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, true, err
		}
		err = f.Truncate(e.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return nil, true, err
	}
	if fi, err := os.Lstat(dst); err == nil && !fi.Mode().IsRegular() {
		if err := os.RemoveAll(dst); err != nil {
			return nil, true, err
		}
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, true, err
	}
	defer f.Close()
	need = make([]bool, len(e.Blocks))
	buf := make([]byte, BlockSize)
	var off int64
	for i, b := range e.Blocks {
		if len(buf) < b.Len {
			buf = make([]byte, b.Len)
		}
		n, _ := f.ReadAt(buf[:b.Len], off)
		sum := sha256.Sum256(buf[:n])
		if n != b.Len || hex.EncodeToString(sum[:]) != b.SHA256 {
			need[i], changed = true, true
		}
		off += int64(b.Len)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, true, err
	}
	if fi.Size() != e.Size {
		changed = true
		if err := f.Truncate(e.Size); err != nil {
			return nil, true, err
		}
	}
	return need, changed, f.Chmod(0o600)
}

// PackPool holds pack-sized buffers, filled by a backup and emptied by a
// restore, one per pack in flight.
var PackPool = freelist.New(8, PackSize)

// FetchPack reads a whole pack into *buf (grown if need be) and checks it
// is the content its name says (the envelope's SHA-256 of the raw content,
// checked as it is read). It returns the content and the stored size.
func FetchPack(ctx context.Context, a *archive.Archive, id string, buf *[]byte) ([]byte, int64, error) {
	return fetchPack(ctx, a.Load, id, a, buf, nil)
}

// fetchBlocks reads a whole pack for the blocks ws a restore writes from
// it, and checks each against its own SHA-256 as part of the read (a
// mismatch reads the pack once more, then fails). The pack's content
// digest is not computed: the block hashes prove every byte written, and
// each byte is hashed once (envelope.OpenUnhashed).
func fetchBlocks(ctx context.Context, a *archive.Archive, id string, buf *[]byte, ws []write) ([]byte, int64, error) {
	return fetchPack(ctx, a.LoadUnhashed, id, a, buf, func(data []byte) error { return checkBlocks(data, 0, ws, id) })
}

type loader func(context.Context, string, func(envelope.Header, io.Reader) error) error

func fetchPack(ctx context.Context, load loader, id string, a *archive.Archive, buf *[]byte, check func([]byte) error) ([]byte, int64, error) {
	var data []byte
	var stored int64
	err := load(ctx, a.Layout.Pack(id), func(hdr envelope.Header, rc io.Reader) error {
		stored = hdr.ObjectSize()
		if hdr.Digest.String() != id {
			return fmt.Errorf("%w: pack %s holds content %s", errkind.ErrCorrupt, id[:12], hdr.Digest.Short())
		}
		if hdr.RawSize > PackSize {
			return fmt.Errorf("%w: pack %s holds %d bytes, more than a pack may (%d)", errkind.ErrCorrupt, id[:12], hdr.RawSize, PackSize)
		}
		// One buffer of the pack's size, read to the end: the checks run
		// when the reader reaches it.
		if int64(cap(*buf)) < hdr.RawSize {
			*buf = make([]byte, 0, hdr.RawSize)
		}
		data = (*buf)[:hdr.RawSize]
		if _, err := io.ReadFull(rc, data); err != nil {
			return err
		}
		if n, err := rc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("%w: pack %s runs past its size", errkind.ErrCorrupt, id[:12])
			}
			return err
		}
		if check != nil {
			return check(data)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("pack %s: %w", id[:12], err)
	}
	return data, stored, nil
}

// checkBlocks checks each block of ws in data (a pack's content from
// offset base on) against its own SHA-256. The pack is what its name
// says, but its name does not vouch for the backup's listing of it: a
// poisoned listing, a progress record that lied, cannot put other bytes
// into a file.
func checkBlocks(data []byte, base int64, ws []write, pack string) error {
	for _, w := range ws {
		if w.packOff < base || w.packOff-base+int64(w.n) > int64(len(data)) {
			return fmt.Errorf("%w: a block of %s lies past the end of pack %s", errkind.ErrCorrupt, w.path, pack[:12])
		}
		b := data[w.packOff-base : w.packOff-base+int64(w.n)]
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != w.sum {
			return fmt.Errorf("%w: %s, block at offset %d: pack %s holds content %s there, the backup lists %s", errkind.ErrCorrupt, w.path, w.fileOff, pack[:12], hex.EncodeToString(sum[:6]), w.sum[:min(12, len(w.sum))])
		}
	}
	return nil
}

// writeBlocks writes a pack's blocks into their files, each file opened
// once; data holds the pack's content from offset base on, its blocks
// already checked (checkBlocks).
func writeBlocks(data []byte, base int64, ws []write, prog *Progress) error {
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].path != ws[j].path {
			return ws[i].path < ws[j].path
		}
		return ws[i].fileOff < ws[j].fileOff
	})
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for _, w := range ws {
		if w.packOff < base || w.packOff-base+int64(w.n) > int64(len(data)) {
			return fmt.Errorf("%w: a block of %s lies past the end of its pack", errkind.ErrCorrupt, w.path)
		}
		if f == nil || f.Name() != w.path {
			if f != nil {
				if err := f.Close(); err != nil {
					return err
				}
			}
			var err error
			if f, err = os.OpenFile(w.path, os.O_WRONLY, 0); err != nil {
				return err
			}
		}
		b := data[w.packOff-base : w.packOff-base+int64(w.n)]
		if _, err := f.WriteAt(b, w.fileOff); err != nil {
			return err
		}
		prog.Add(int64(w.n))
	}
	if f != nil {
		err := f.Close()
		f = nil
		return err
	}
	return nil
}

// parseMapping parses --tablespace-mapping OLD=NEW values.
func parseMapping(specs []string) (map[string]string, error) {
	return parsePathMapping("--tablespace-mapping", specs)
}

// parsePathMapping parses OLD=NEW values of flag (absolute paths).
func parsePathMapping(flag string, specs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range specs {
		old, new, ok := strings.Cut(s, "=")
		if !ok || !filepath.IsAbs(old) || !filepath.IsAbs(new) {
			return nil, fmt.Errorf("%w: %s %q: want OLD=NEW, both absolute paths", errkind.ErrInvalid, flag, s)
		}
		old, new = filepath.Clean(old), filepath.Clean(new)
		if _, dup := m[old]; dup {
			return nil, fmt.Errorf("%w: %s: %s mapped twice", errkind.ErrInvalid, flag, old)
		}
		m[old] = new
	}
	return m, nil
}

func tablespaceTarget(location string, mapping map[string]string) string {
	if to, ok := mapping[filepath.Clean(location)]; ok {
		return to
	}
	return location
}

// placeTablespaces decides where the backup's tablespaces go and checks
// that each place is free: an empty or missing directory, as PostgreSQL
// requires of a tablespace's location, or, with delta, the place the
// data directory's own link for that tablespace points to (compared in
// place). Every mapping must name one of the backup's tablespaces (a
// typo is not silently ignored).
func placeTablespaces(c archive.Contents, mapping map[string]string, pgdata string, delta bool) (targets, roots []string, err error) {
	var links []archive.Entry
	seen := map[string]bool{}
	for _, e := range c.Entries {
		if e.Link != "" {
			links = append(links, e)
			seen[filepath.Clean(e.Link)] = true
		}
	}
	for old := range mapping {
		if !seen[old] {
			return nil, nil, fmt.Errorf("%w: --tablespace-mapping %s: the backup has no tablespace there", errkind.ErrInvalid, old)
		}
	}
	targets = []string{}
	for _, e := range links {
		target := tablespaceTarget(e.Link, mapping)
		// With delta, the data directory's own tablespace: compared in
		// place like the rest of it.
		own := false
		if delta {
			to, err := os.Readlink(filepath.Join(pgdata, filepath.FromSlash(e.Path)))
			own = err == nil && filepath.Clean(to) == target
		}
		if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 && !own {
			hint := ""
			if delta {
				hint = fmt.Sprintf(" and is not this cluster's (its %s does not point there)", e.Path)
			}
			if target == e.Link {
				hint = " (give --tablespace-mapping " + e.Link + "=NEW to restore it elsewhere)"
			}
			return nil, nil, fmt.Errorf("%w: tablespace %s: %s is not empty%s", errkind.ErrInvalid, e.Path, target, hint)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: tablespace %s: %v", errkind.ErrInvalid, e.Path, err)
		}
		targets = append(targets, target)
		// The restore makes the missing directories on the way: the
		// cluster's user must own them too, to reach the tablespace.
		root := target
		for {
			parent := filepath.Dir(root)
			if _, err := os.Stat(parent); err == nil || parent == root {
				break
			}
			root = parent
		}
		roots = append(roots, root)
	}
	return targets, roots, nil
}
