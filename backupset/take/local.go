package take

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// The local reader (walstored backup --pgdata, on the database host):
// pg_backup_start and pg_backup_stop over one session, and the files
// read here by Readers goroutines, each hashing its blocks (and checking
// its pages' checksums) while the block writer packs what is new. It
// skips what PostgreSQL's own base backup skips, follows the tablespaces
// of pg_tblspc, and needs no pg_basebackup: the replication connection
// and its single stream are out of the way.

// skipContents are directories whose contents a base backup leaves out
// (PostgreSQL's basebackup.c); the directories themselves are kept.
var skipContents = map[string]bool{
	"pg_wal": true, "pg_stat_tmp": true, "pg_replslot": true, "pg_dynshmem": true,
	"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true,
}

// skipFiles are files a base backup leaves out, wherever they are.
var skipFiles = map[string]bool{
	"postgresql.auto.conf.tmp": true, "current_logfiles": true, "pg_internal.init": true,
	"backup_label": true, "tablespace_map": true, "backup_manifest": true,
	"postmaster.pid": true, "postmaster.opts": true,
}

// relFile matches a relation file: <relfilenode>[_fork][.segment].
var relFile = regexp.MustCompile(`^(\d+)(_(fsm|vm|init))?(\.(\d+))?$`)

// tempRel matches a temporary relation's file (t<backend>_<relfilenode>).
var tempRel = regexp.MustCompile(`^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$`)

// localEntry is a file, directory or tablespace link to back up.
type localEntry struct {
	rel  string // path in the backup
	abs  string // path on this host
	dir  bool
	link string // pg_tblspc/<oid>: the tablespace's location
}

// listLocal walks pgdata (and the tablespaces its pg_tblspc links to) in
// a stable order.
func listLocal(pgdata string, warn io.Writer) ([]localEntry, error) {
	var out []localEntry
	var walk func(abs, rel string) error
	walk = func(abs, rel string) error {
		ents, err := os.ReadDir(abs)
		if err != nil {
			return err
		}
		// Unlogged relations: only their init fork is backed up.
		unlogged := map[string]bool{}
		for _, e := range ents {
			if m := relFile.FindStringSubmatch(e.Name()); m != nil && m[3] == "init" {
				unlogged[m[1]] = true
			}
		}
		for _, e := range ents {
			name := e.Name()
			a, r := filepath.Join(abs, name), path.Join(rel, name)
			if skipFiles[name] || strings.HasPrefix(name, "pgsql_tmp") || tempRel.MatchString(name) {
				continue
			}
			if m := relFile.FindStringSubmatch(name); m != nil && unlogged[m[1]] && m[3] != "init" {
				continue
			}
			t := e.Type()
			switch {
			case rel == "" && name == "pg_wal" && t&fs.ModeSymlink != 0:
				// pg_wal elsewhere: a directory in the backup, as in
				// PostgreSQL's, and empty like it.
				out = append(out, localEntry{rel: r, dir: true}, localEntry{rel: "pg_wal/archive_status", dir: true})
			case t&fs.ModeSymlink != 0 && rel != "pg_tblspc":
				fmt.Fprintf(warn, "WARNING symbolic link %s in the data directory is not backed up (only tablespaces and pg_wal may be links)\n", r)
			case rel == "pg_tblspc" && t&fs.ModeSymlink != 0:
				target, err := os.Readlink(a)
				if err != nil {
					return err
				}
				if !filepath.IsAbs(target) {
					return fmt.Errorf("%w: tablespace link %s points to %q, not an absolute path", errkind.ErrInvalid, r, target)
				}
				out = append(out, localEntry{rel: r, abs: a, link: target})
				if err := walk(target, r); err != nil {
					return err
				}
			case t.IsDir():
				out = append(out, localEntry{rel: r, abs: a, dir: true})
				if rel == "" && skipContents[name] {
					if name == "pg_wal" {
						out = append(out, localEntry{rel: "pg_wal/archive_status", dir: true})
					}
					continue
				}
				if err := walk(a, r); err != nil {
					return err
				}
			case t.IsRegular():
				out = append(out, localEntry{rel: r, abs: a})
			}
		}
		return nil
	}
	if err := walk(pgdata, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// blockMsg is a block read by a reader, for the writer.
type blockMsg struct {
	entry int
	data  []byte
	sum   [32]byte
	done  bool // the file's last message (data may be empty)
	gone  bool // the file was removed meanwhile
	// With done: the CRC-32C of the file's bytes, and its modification
	// and change times and inode when opened.
	crc   uint32
	mtime time.Time
	ctime int64
	ino   uint64
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, backupset.BlockSize); return &b }}

// readLocal takes the backup from the files of opt.PGData.
func readLocal(ctx context.Context, opt Options, id string, cl Cluster, bw *blockWriter, prev *previous, prog *backupset.Progress) error {
	pgdata, err := filepath.Abs(opt.PGData)
	if err != nil {
		return err
	}
	if err := checkLocalDir(pgdata, cl); err != nil {
		return err
	}
	conn, err := pgConnect(ctx, opt.ConnInfo)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dataDir, checksums string
	if err := conn.QueryRow(ctx, `SELECT current_setting('data_directory'), current_setting('data_checksums')`).Scan(&dataDir, &checksums); err != nil {
		return fmt.Errorf("read the cluster's data_directory: %w", err)
	}
	if filepath.Clean(dataDir) != pgdata {
		return fmt.Errorf("%w: --pgdata %s: the cluster at --pg runs in %s", errkind.ErrInvalid, pgdata, dataDir)
	}
	var startText string
	if err := conn.QueryRow(ctx, `SELECT pg_backup_start($1, true)::text`, backupLabel(id)).Scan(&startText); err != nil {
		return fmt.Errorf("pg_backup_start: %w", err)
	}
	start, err := wal.ParseLSN(startText)
	if err != nil {
		return err
	}
	list, err := listLocal(pgdata, opt.Warn)
	if err != nil {
		return fmt.Errorf("read %s: %w", pgdata, err)
	}
	bw.entries = make([]entryBuild, len(list))
	for i, e := range list {
		bw.entries[i] = entryBuild{path: e.rel, dir: e.dir, link: e.link}
	}
	v := &pageVerifier{on: checksums == "on", start: start}
	unread := map[int]bool{}
	if !opt.FullRead {
		unread = bw.reuseUnchanged(list, prev, prog)
	}
	if err := readFiles(ctx, opt.Readers, list, unread, bw, v, prog); err != nil {
		return err
	}
	if bw.unread = len(unread); prev != nil {
		bw.unreadFrom = prev.id
	}
	var stopText, labelFile, spcMap string
	if err := conn.QueryRow(ctx, `SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(true)`).Scan(&stopText, &labelFile, &spcMap); err != nil {
		return fmt.Errorf("pg_backup_stop: %w", err)
	}
	if bw.stop, err = wal.ParseLSN(stopText); err != nil {
		return err
	}
	if cl.InRecovery {
		var tli uint32
		if err := conn.QueryRow(ctx, `SELECT timeline_id FROM pg_control_checkpoint()`).Scan(&tli); err != nil {
			return err
		}
		bw.stopTLI = tli
	}
	// backup_label goes in as PostgreSQL wrote it; the tablespaces are
	// links in the backup (a restore makes them, remapped if asked), so
	// tablespace_map is kept in the record, not in the files.
	bw.label = []byte(labelFile)
	bw.spcMap = spcMap
	if err := bw.addFile("backup_label", bw.label); err != nil {
		return err
	}
	if err := bw.addPGManifest(opt.Warn); err != nil {
		return err
	}
	if err := bw.flush(true); err != nil {
		return err
	}
	if err := bw.g.Wait(); err != nil {
		return err
	}
	return v.result(opt.AcceptBadChecksums, bw)
}

// addPGManifest adds PostgreSQL's backup_manifest to a backup read
// locally, listing every file read (backup_label included) and the WAL
// from where its label starts to where pg_backup_stop said it ends. A standby
// backup whose timeline changed while it ran (its upstream was promoted)
// gets none: its WAL ranges would need the timeline history, and
// nothing but pg_verifybackup reads the manifest of a backup read
// locally.
func (bw *blockWriter) addPGManifest(warn io.Writer) error {
	bl, err := wal.ParseBackupLabel(bw.label)
	if err != nil {
		return fmt.Errorf("backup_label: %w", err)
	}
	if bw.stopTLI != 0 && bw.stopTLI != bl.StartTLI {
		fmt.Fprintf(warn, "WARNING the timeline changed from %d to %d during the backup: it has no backup_manifest (pg_verifybackup cannot check a restored copy)\n", bl.StartTLI, bw.stopTLI)
		return nil
	}
	var files []pgManifestFile
	for _, e := range bw.entries {
		if !e.dir && e.link == "" {
			files = append(files, pgManifestFile{path: e.path, size: e.size, mtime: e.mtime, crc: e.crc})
		}
	}
	bw.manifest = pgManifest(files, bl.StartTLI, bl.StartLSN, bw.stop)
	return bw.addFile("backup_manifest", bw.manifest)
}

// addFile adds a file made here (not read from the data directory) to
// the backup, in blocks.
func (bw *blockWriter) addFile(path string, data []byte) error {
	e := entryBuild{path: path, size: int64(len(data)), crc: crc32.Checksum(data, backupset.Castagnoli), mtime: time.Now()}
	for off := 0; off < len(data); off += backupset.BlockSize {
		ref, err := bw.add(data[off:min(off+backupset.BlockSize, len(data))])
		if err != nil {
			return err
		}
		e.refs = append(e.refs, ref)
	}
	bw.entries = append(bw.entries, e)
	bw.files++
	return nil
}

// checkLocalDir checks that pgdata is the data directory of the cluster
// at --pg: its pg_control names the same system.
func checkLocalDir(pgdata string, cl Cluster) error {
	b, err := os.ReadFile(filepath.Join(pgdata, "global", "pg_control"))
	if err != nil || len(b) < 8 {
		return fmt.Errorf("%w: --pgdata %s: no readable global/pg_control (run walstored backup --pgdata on the database host, as a user that can read the data directory): %v", errkind.ErrInvalid, pgdata, err)
	}
	if sysid := binary.LittleEndian.Uint64(b); sysid != cl.SystemID {
		return fmt.Errorf("%w: --pgdata %s holds system %d, the cluster at --pg is system %d", errkind.ErrWrongSystem, pgdata, sysid, cl.SystemID)
	}
	return nil
}

// readFiles reads the regular files of list with readers goroutines and
// hands their blocks to the writer (this goroutine), which stores them.
func readFiles(ctx context.Context, readers int, list []localEntry, unread map[int]bool, bw *blockWriter, v *pageVerifier, prog *backupset.Progress) error {
	g, gctx := errgroup.WithContext(ctx)
	gctx, stopReading := context.WithCancel(gctx)
	defer stopReading()
	msgs := make(chan blockMsg, 4*readers)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i, e := range list {
			if e.dir || e.link != "" || unread[i] {
				continue
			}
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var rg sync.WaitGroup
	for range max(readers, 1) {
		rg.Go(func() {
			for i := range next {
				if err := readFile(gctx, list[i], i, msgs, v); err != nil {
					g.Go(func() error { return err })
					return
				}
			}
		})
	}
	go func() { rg.Wait(); close(msgs) }()
	gone := map[int]bool{}
	var werr error
	for m := range msgs {
		if werr != nil {
			continue // drain
		}
		if m.gone {
			gone[m.entry] = true
			continue
		}
		if len(m.data) > 0 {
			ref, err := bw.addSum(m.data, m.sum)
			blockPool.Put(&m.data)
			if err != nil {
				werr = err
				stopReading()
				continue
			}
			e := &bw.entries[m.entry]
			e.refs = append(e.refs, ref)
			e.size += int64(len(m.data))
			prog.Add(int64(len(m.data)))
		}
		if m.done {
			e := &bw.entries[m.entry]
			e.crc, e.mtime, e.ctime, e.ino, e.stat = m.crc, m.mtime, m.ctime, m.ino, m.ino != 0
			bw.files++
		}
	}
	if err := g.Wait(); werr == nil && err != nil {
		werr = err
	}
	if werr != nil {
		return werr
	}
	// A file removed while the backup ran is left out: WAL replay
	// removes or makes it again.
	kept := bw.entries[:0]
	for i, e := range bw.entries {
		if !gone[i] {
			kept = append(kept, e)
		}
	}
	bw.entries = kept
	return nil
}

// changeOf is a file's change time (ns) and inode (0, 0 where the file
// system does not say).
func changeOf(fi fs.FileInfo) (int64, uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return st.Ctim.Nano(), st.Ino
}

// unchangedWindow: a file modified less than this before the newest
// backup began is read again, whatever its times say (a write in the
// same clock tick as that backup's read would otherwise go unseen).
const unchangedWindow = time.Minute

// reuseUnchanged takes from the newest backup (prev) each regular file
// that cannot have changed since it read it: the same size, modification
// time, change time and inode (anything that writes, renames, copies or
// touches a file changes one of them), and modified at least
// unchangedWindow before prev began, and its entry sealed by this host's
// key (seal.go). Its blocks are prev's, in packs the index holds; nothing
// of it is read. It returns the files taken so.
func (bw *blockWriter) reuseUnchanged(list []localEntry, prev *previous, prog *backupset.Progress) map[int]bool {
	unread := map[int]bool{}
	if prev == nil || prev.start.IsZero() {
		return unread
	}
	for i, e := range list {
		if e.dir || e.link != "" {
			continue
		}
		pe, ok := prev.files[e.rel]
		if !ok || !sealed(bw.sealKey, &pe) {
			continue // not read here before, or not by this host (seal.go)
		}
		fi, err := os.Lstat(e.abs)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		ctime, ino := changeOf(fi)
		mtime := fi.ModTime()
		if ino == 0 || fi.Size() != pe.Size || mtime.UnixNano() != pe.MTime || ctime != pe.CTime || ino != pe.Inode ||
			!mtime.Before(prev.start.Add(-unchangedWindow)) || time.Unix(0, ctime).After(prev.start.Add(-unchangedWindow)) {
			continue
		}
		refs, ok := bw.refsOf(pe, prev.packs)
		if !ok {
			continue
		}
		ent := &bw.entries[i]
		ent.refs, ent.size = refs, pe.Size
		ent.crc, ent.mtime, ent.ctime, ent.ino, ent.stat = *pe.CRC, mtime, ctime, ino, true
		bw.files++
		unread[i] = true
		prog.Add(pe.Size)
	}
	return unread
}

// readFile reads one file in blocks, up to the size it had when opened
// (what grows later is WAL replay's to write).
func readFile(ctx context.Context, e localEntry, i int, msgs chan<- blockMsg, v *pageVerifier) error {
	f, err := os.Open(e.abs)
	if errors.Is(err, fs.ErrNotExist) {
		msgs <- blockMsg{entry: i, gone: true}
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r := io.LimitReader(f, fi.Size())
	var off int64
	var crc uint32
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		bp := blockPool.Get().(*[]byte)
		buf := (*bp)[:backupset.BlockSize]
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			v.check(f, e.rel, off, buf[:n])
			crc = crc32.Update(crc, backupset.Castagnoli, buf[:n])
			m := blockMsg{entry: i, data: buf[:n], sum: sha256Sum(buf[:n])}
			off += int64(n)
			msgs <- m
		} else {
			blockPool.Put(bp)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			ctime, ino := changeOf(fi)
			msgs <- blockMsg{entry: i, done: true, crc: crc, mtime: fi.ModTime(), ctime: ctime, ino: ino}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", e.abs, err)
		}
	}
}

// pageVerifier checks the page checksums of relation files, as
// PostgreSQL's base backup does: a page whose LSN is past the backup's
// start is being written and WAL replay rewrites it; a page that fails is
// read once more before it counts (it may have been written meanwhile).
type pageVerifier struct {
	on    bool
	start wal.LSN
	mu    sync.Mutex
	bad   []string
}

const pageSize = 8192

// relSegPages is the pages in one segment file of a relation (1 GiB).
const relSegPages = 131072

func (v *pageVerifier) check(f *os.File, rel string, off int64, data []byte) {
	if !v.on {
		return
	}
	dir, name := path.Split(rel)
	if !strings.HasPrefix(dir, "base/") && dir != "global/" && !strings.HasPrefix(dir, "pg_tblspc/") {
		return
	}
	m := relFile.FindStringSubmatch(name)
	if m == nil {
		return
	}
	seg, _ := strconv.ParseUint(m[5], 10, 32)
	for p := 0; p+pageSize <= len(data); p += pageSize {
		page := data[p : p+pageSize]
		blk := uint32(seg*relSegPages + uint64((off+int64(p))/pageSize))
		if pageOK(page, blk, v.start) {
			continue
		}
		again := make([]byte, pageSize)
		if n, _ := f.ReadAt(again, off+int64(p)); n == pageSize && pageOK(again, blk, v.start) {
			continue
		}
		v.mu.Lock()
		v.bad = append(v.bad, fmt.Sprintf("%s block %d", rel, uint64(off+int64(p))/pageSize))
		v.mu.Unlock()
	}
}

// pageOK: new (all zero), written after start, or its checksum matches.
func pageOK(page []byte, blk uint32, start wal.LSN) bool {
	lsn := wal.LSN(uint64(binary.LittleEndian.Uint32(page[0:4]))<<32 | uint64(binary.LittleEndian.Uint32(page[4:8])))
	if lsn >= start {
		return true
	}
	if binary.LittleEndian.Uint16(page[14:16]) == 0 { // pd_upper: a new page
		for _, b := range page {
			if b != 0 {
				return false
			}
		}
		return true
	}
	return PageChecksum(page, blk) == binary.LittleEndian.Uint16(page[8:10])
}

// result fails the backup on bad pages, unless accepted: then they are
// recorded in the backup's record.
func (v *pageVerifier) result(accept bool, bw *blockWriter) error {
	sort.Strings(v.bad)
	bw.badPages = v.bad
	if len(v.bad) == 0 || accept {
		return nil
	}
	more := ""
	if len(v.bad) > 1 {
		more = fmt.Sprintf(" (and %d more pages)", len(v.bad)-1)
	}
	return fmt.Errorf("%w: page checksum failure in %s%s: the cluster has a damaged page; give --accept-bad-checksums to store the backup anyway (they are listed in its record)", errkind.ErrCorrupt, v.bad[0], more)
}

// checksumBase are the initial states of PostgreSQL's 32 parallel FNV-1a
// page checksum lanes (storage/checksum_impl.h).
var checksumBase = [32]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// PageChecksum is PostgreSQL's checksum of an 8 KiB page that is block
// blk of its relation (the page's own checksum field counts as zero).
func PageChecksum(page []byte, blk uint32) uint16 {
	sums := checksumBase
	comp := func(sum, v uint32) uint32 {
		t := sum ^ v
		return t*16777619 ^ t>>17
	}
	for i := 0; i < pageSize/128; i++ {
		for j := 0; j < 32; j++ {
			o := i*128 + j*4
			w := binary.LittleEndian.Uint32(page[o : o+4])
			if o == 8 { // pd_checksum (and pd_flags): the checksum is zero
				w &= 0xFFFF0000
			}
			sums[j] = comp(sums[j], w)
		}
	}
	var res uint32
	for j := range sums {
		sums[j] = comp(comp(sums[j], 0), 0)
		res ^= sums[j]
	}
	res ^= blk
	return uint16(res%65535 + 1)
}
