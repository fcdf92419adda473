package take

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// blockLoc is where a block already is: in a stored pack (id), or in a
// pack this backup is filling (pending).
type blockLoc struct {
	pack    string
	pending *pendingPack
	off     int64
	n       int
	// unproven: only an incomplete backup's backupset.Progress record says the
	// block is there; it is read back and hashed before a backup refers
	// to it (blockWriter.prove).
	unproven bool
}

// blockIndex maps a block's SHA-256 (raw) to where it is.
type blockIndex map[[32]byte]blockLoc

// loadIndex learns the blocks the archive holds that a new backup may
// use: those of the newest completed backup in blocks (its contents were
// checked when it completed), and, unproven, those the backupset.Progress records
// of incomplete backups list (an interrupted backup: run again, it
// uploads none of what it stored). A backupset.Progress record is anyone's word
// with a backup token: a block it lists is used only once its pack was
// read back and the block hashed to its address (blockWriter.prove), and
// never in place of a completed backup's.
func loadIndex(ctx context.Context, a *archive.Archive) (blockIndex, map[string][]archive.PackBlock, *previous, error) {
	idx := blockIndex{}
	unproven := map[string][]archive.PackBlock{}
	var prev *previous
	l, err := a.ListBackups(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	for i := len(l.Complete) - 1; i >= 0; i-- {
		r := l.Complete[i]
		if r.Format != archive.FormatBlocks {
			continue
		}
		c, err := a.ReadContents(ctx, r.ID)
		if err != nil {
			return nil, nil, nil, err
		}
		prev = &previous{id: r.ID, start: r.StartTime, packs: c.Packs, files: map[string]archive.Entry{}}
		for _, e := range c.Entries {
			if !e.Dir && e.Link == "" && e.CRC != nil {
				prev.files[e.Path] = e
			}
			for _, b := range e.Blocks {
				if h, ok := decodeSum(b.SHA256); ok {
					idx[h] = blockLoc{pack: c.Packs[b.Pack], off: b.Off, n: b.Len}
				}
			}
		}
		break
	}
	for id := range l.Incomplete {
		ps, err := a.ReadProgress(ctx, id)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, p := range ps {
			if p.Pack == "" || archive.ValidPackID(p.Pack) != nil {
				continue
			}
			for _, b := range p.Blocks {
				h, ok := decodeSum(b.SHA256)
				if _, known := idx[h]; !ok || known {
					continue
				}
				idx[h] = blockLoc{pack: p.Pack, off: b.Off, n: b.Len, unproven: true}
				unproven[p.Pack] = append(unproven[p.Pack], b)
			}
		}
	}
	return idx, unproven, prev, nil
}

// previous is the newest completed backup, as the next one may reuse its
// unchanged files without reading them (local reader).
type previous struct {
	id    string
	start time.Time
	packs []string
	files map[string]archive.Entry // regular files read locally, by path
}

// prove reads back a pack an incomplete backup's backupset.Progress record lists
// (checked against its name as it is read) and hashes each block the
// record says it holds: the blocks that match become usable, the others
// are forgotten (and a warning says so: a planted record, or a damaged
// pack).
func (w *blockWriter) prove(pack string) {
	blocks := w.unproven[pack]
	delete(w.unproven, pack)
	buf := backupset.PackPool.Get()
	defer backupset.PackPool.Put(buf)
	data, _, err := backupset.FetchPack(w.gctx, w.a, pack, buf)
	bad := 0
	for _, b := range blocks {
		h, _ := decodeSum(b.SHA256)
		loc, ok := w.idx[h]
		if !ok || !loc.unproven || loc.pack != pack {
			continue
		}
		if err == nil && b.Off >= 0 && b.Off+int64(b.Len) <= int64(len(data)) && sha256.Sum256(data[b.Off:b.Off+int64(b.Len)]) == h {
			loc.unproven = false
			w.idx[h] = loc
			continue
		}
		delete(w.idx, h)
		bad++
	}
	if err != nil || bad > 0 {
		w.warnings = append(w.warnings, fmt.Sprintf("pack %s, listed by an incomplete backup's backupset.Progress record, does not hold %d of the blocks it lists (%v): they were not used, and were stored anew", pack[:12], bad, err))
	}
}

func decodeSum(s string) ([32]byte, bool) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

// pendingPack is a pack being filled, then uploaded.
type pendingPack struct {
	buf    []byte
	blocks []archive.PackBlock
	id     string // set once uploaded
}

// blockRef is one block of a file of the backup being taken.
type blockRef struct {
	loc  blockLoc
	sum  [32]byte
	size int
}

type entryBuild struct {
	path string
	dir  bool
	link string // a tablespace: its location
	size int64
	refs []blockRef
	// Read locally: the file's CRC-32C and modification time, for
	// PostgreSQL's backup_manifest, and its change time and inode, for
	// the next backup's unchanged-file test (stat set: all four known).
	crc   uint32
	mtime time.Time
	ctime int64
	ino   uint64
	stat  bool
}

// blockWriter cuts the files of PostgreSQL's tar stream into blocks and
// stores the ones the archive lacks in packs, Jobs packs at once; each
// stored pack is followed by a backupset.Progress record.
type blockWriter struct {
	a        *archive.Archive
	id       string
	idx      blockIndex
	g        *errgroup.Group
	gctx     context.Context
	cur      *pendingPack
	seq      int
	reused   map[string]bool // packs of earlier backups used since the last backupset.Progress record
	entries  []entryBuild
	label    []byte
	manifest []byte
	files    int
	// Set by the local reader: where pg_backup_stop said the backup
	// ends (and its timeline, on a standby), tablespace_map, bad pages.
	stop     wal.LSN
	stopTLI  uint32
	spcMap   string
	badPages []string

	encoders *envelope.EncoderList // one per pack in flight, kept with its buffer
	sealKey  []byte                // seals locally read entries (seal.go)

	raw, reusedRaw, added atomic.Int64
	mu                    sync.Mutex

	// unproven are the blocks, by pack, that only incomplete backups'
	// backupset.Progress records list (see prove); warnings what proving found.
	unproven map[string][]archive.PackBlock
	warnings []string
	// unread counts the files taken unread from the newest backup,
	// unreadFrom.
	unread     int
	unreadFrom string
}

func newBlockWriter(ctx context.Context, a *archive.Archive, id string, idx blockIndex, unproven map[string][]archive.PackBlock, jobs int) *blockWriter {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	return &blockWriter{a: a, id: id, idx: idx, unproven: unproven, g: g, gctx: gctx, reused: map[string]bool{}, encoders: envelope.NewEncoderList(jobs, a.Encoder)}
}

// consume reads the whole tar stream (draining it even after an error, so
// that pg_basebackup never blocks) and waits for the uploads.
func (w *blockWriter) consume(r io.Reader, prog *backupset.Progress) error {
	err := w.walk(bufio.NewReaderSize(r, 1<<20), prog)
	io.Copy(io.Discard, r)
	if err == nil {
		err = w.flush(true)
	}
	if gerr := w.g.Wait(); err == nil {
		err = gerr
	}
	if err == nil && w.label == nil {
		err = fmt.Errorf("%w: the backup has no backup_label", errkind.ErrInvalid)
	}
	return err
}

func (w *blockWriter) walk(r io.Reader, prog *backupset.Progress) error {
	tr := tar.NewReader(r)
	block := make([]byte, backupset.BlockSize)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if w.gctx.Err() != nil {
			return w.gctx.Err()
		}
		name := strings.TrimSuffix(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
		if _, err := backupset.SafePath(name); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			w.entries = append(w.entries, entryBuild{path: name, dir: true})
			continue
		case tar.TypeSymlink:
			if strings.HasPrefix(name, "pg_tblspc/") {
				return fmt.Errorf("%w: tablespace link %s in the backup", errkind.ErrInvalid, name)
			}
			return fmt.Errorf("%w: %s: a symbolic link in the backup", errkind.ErrInvalid, name)
		case tar.TypeReg:
		default:
			return fmt.Errorf("%w: %s: tar entry type %q", errkind.ErrInvalid, name, h.Typeflag)
		}
		w.files++
		e := entryBuild{path: name, size: h.Size}
		var keep *[]byte
		switch name {
		case "backup_label":
			keep = &w.label
		case "backup_manifest":
			keep = &w.manifest
		}
		for {
			n, err := io.ReadFull(tr, block)
			if n > 0 {
				if keep != nil {
					*keep = append(*keep, block[:n]...)
				}
				ref, err := w.add(block[:n])
				if err != nil {
					return err
				}
				e.refs = append(e.refs, ref)
				prog.Add(int64(n))
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		w.entries = append(w.entries, e)
	}
}

// add stores a block: found in the index, or appended to the pack being
// filled.
func (w *blockWriter) add(b []byte) (blockRef, error) {
	return w.addSum(b, sha256Sum(b))
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// addSum is add for a block whose SHA-256 is known.
func (w *blockWriter) addSum(b []byte, sum [32]byte) (blockRef, error) {
	ref := blockRef{sum: sum, size: len(b)}
	w.raw.Add(int64(len(b)))
	if loc, ok := w.idx[sum]; ok && loc.unproven {
		w.prove(loc.pack)
	}
	if loc, ok := w.idx[sum]; ok && loc.n == len(b) {
		ref.loc = loc
		if loc.pack != "" {
			w.reusedRaw.Add(int64(len(b)))
			w.reused[loc.pack] = true
		}
		return ref, nil
	}
	if w.cur != nil && len(w.cur.buf)+len(b) > backupset.PackSize {
		if err := w.flush(false); err != nil {
			return ref, err
		}
	}
	if w.cur == nil {
		w.cur = &pendingPack{buf: *backupset.PackPool.Get()}
	}
	ref.loc = blockLoc{pending: w.cur, off: int64(len(w.cur.buf)), n: len(b)}
	w.cur.blocks = append(w.cur.blocks, archive.PackBlock{SHA256: hex.EncodeToString(sum[:]), Off: ref.loc.off, Len: len(b)})
	w.cur.buf = append(w.cur.buf, b...)
	w.idx[sum] = ref.loc // the same block again in this backup (zero pages): once
	return ref, nil
}

// refsOf are the blocks of a file of the newest backup (its contents'
// entry e, with that backup's pack list), found in the index as a read
// of the same bytes would find them; false if one is not there.
func (w *blockWriter) refsOf(e archive.Entry, packs []string) ([]blockRef, bool) {
	var refs []blockRef
	var raw int64
	for _, b := range e.Blocks {
		sum, ok := decodeSum(b.SHA256)
		if !ok || b.Pack < 0 || b.Pack >= len(packs) {
			return nil, false
		}
		loc, ok := w.idx[sum]
		if !ok || loc.unproven || loc.pack != packs[b.Pack] || loc.n != b.Len {
			return nil, false
		}
		refs = append(refs, blockRef{loc: loc, sum: sum, size: b.Len})
		raw += int64(b.Len)
	}
	if raw != e.Size {
		return nil, false
	}
	for _, r := range refs {
		w.reused[r.loc.pack] = true
	}
	w.raw.Add(raw)
	w.reusedRaw.Add(raw)
	return refs, true
}

// flush uploads the pack being filled, then its backupset.Progress record (with the
// earlier packs used since the last one). At the end (last), a record is
// written for the reused packs even without a pack.
func (w *blockWriter) flush(last bool) error {
	p := w.cur
	w.cur = nil
	var reused []string
	for id := range w.reused {
		reused = append(reused, id)
	}
	w.reused = map[string]bool{}
	if p == nil && (!last || len(reused) == 0) {
		return nil
	}
	seq := w.seq
	w.seq++
	w.g.Go(func() error {
		rec := archive.PackProgress{Reused: reused}
		if p != nil {
			sum := sha256.Sum256(p.buf)
			id := hex.EncodeToString(sum[:])
			key := w.a.Layout.Pack(id)
			enc := w.encoders.Get()
			// Framed by blocks, so that a delta restore can read a few
			// of them without the whole pack.
			sizes := make([]int, len(p.blocks))
			for i, b := range p.blocks {
				sizes[i] = b.Len
			}
			obj, err := enc.EncodeFramesSum(p.buf, sizes, sum, key)
			if err != nil {
				return err
			}
			buf := p.buf
			p.buf = nil
			backupset.PackPool.Put(&buf)
			// Put even when a pack of this name may be there already (a
			// run interrupted before its backupset.Progress record): PutObject
			// finds it the same content, or repairs a damaged copy.
			out, err := archive.PutObject(w.gctx, w.a.Store, key, obj)
			if err != nil {
				// The encoder is dropped with its buffer: a request
				// answered early may still be reading it.
				return fmt.Errorf("store pack %s: %w", id[:12], err)
			}
			// Stored: the store has read every byte. Already there: the
			// store may have answered before reading it all, and the
			// request may still be reading: the encoder is dropped.
			if out.BodyDone() {
				w.encoders.Put(enc)
			}
			if out == archive.Stored {
				w.added.Add(obj.Size())
			}
			w.mu.Lock()
			p.id = id
			w.mu.Unlock()
			rec.Pack, rec.Blocks = id, p.blocks
		}
		n, err := w.a.PutBackupJSON(w.gctx, w.id, fmt.Sprintf("%s%05d", archive.ProgressPrefix, seq), rec)
		w.added.Add(n)
		return err
	})
	return nil
}

// contents builds the backup's contents once every pack is stored.
func (w *blockWriter) contents() archive.Contents {
	c := archive.Contents{BlockSize: backupset.BlockSize, Packs: []string{}, Entries: make([]archive.Entry, 0, len(w.entries))}
	packIdx := map[string]int{}
	for _, e := range w.entries {
		ce := archive.Entry{Path: e.path, Dir: e.dir, Link: e.link, Size: e.size}
		if e.stat {
			crc := e.crc
			ce.MTime, ce.CTime, ce.Inode, ce.CRC = e.mtime.UnixNano(), e.ctime, e.ino, &crc
		}
		for _, r := range e.refs {
			id := r.loc.pack
			if r.loc.pending != nil {
				id = r.loc.pending.id
			}
			i, ok := packIdx[id]
			if !ok {
				i = len(c.Packs)
				packIdx[id] = i
				c.Packs = append(c.Packs, id)
			}
			ce.Blocks = append(ce.Blocks, archive.Block{Pack: i, Off: r.loc.off, Len: r.size, SHA256: hex.EncodeToString(r.sum[:])})
		}
		if e.stat && len(w.sealKey) > 0 {
			ce.Seal = sealOf(w.sealKey, &ce)
		}
		c.Entries = append(c.Entries, ce)
	}
	return c
}

// checkPacks checks that every pack of c is stored: an earlier backup's
// pack that a sweep removed while this backup ran fails the backup rather
// than completing one that cannot be restored.
func checkPacks(ctx context.Context, a *archive.Archive, c archive.Contents) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range c.Packs {
		g.Go(func() error {
			if _, err := a.Store.Stat(gctx, a.Layout.Pack(id)); err != nil {
				return fmt.Errorf("pack %s, which the backup uses: %w", id[:12], err)
			}
			return nil
		})
	}
	return g.Wait()
}
