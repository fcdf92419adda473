package fetch

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/walstore/walstore/base/flock"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/wal"
)

// The spool is the prefetch/ directory of the cluster's state directory
// (worker.StateDir: next to the data directory, outside it, so that
// pg_rewind and pg_basebackup never meet a file the prefetcher is
// changing). Serving from it is one rename when it is on the file system
// of pg_wal, a copy otherwise.
//
// A spooled segment is named "<segment>.<crc32c>": the prefetcher writes it
// under a dot name while the archive's SHA-256 is verified and renames it to
// that name only if the digest matched. walfetch checks the CRC-32C again
// (hardware-assisted, ~1 ms for 16 MiB, where a second SHA-256 would cost
// more than the whole cp it replaces) and the page header before handing it
// over. A file that is incomplete, altered, from another timeline or older
// than what was asked is never used, and is removed.
//
// Spool files are not fsync'd: the spool is a cache of the archive, not a
// copy anyone relies on. A file torn by a crash fails its CRC-32C and is
// fetched again; a segment handed to PostgreSQL is made durable by
// PostgreSQL, like one restore_command writes directly. Flushing 16 MiB per
// segment to disk held the prefetcher's workers idle for most of their time.
const spoolSubdir = "prefetch"

const (
	lockFile = ".lock"
	wantFile = ".want"
)

// The spool directory holds, besides finished files:
//
//	.lock           flock held by the running prefetcher
//	.want           the segment walfetch served last (JSON)
//	.<name>.claim   flock held while <name> is being fetched

type spool struct{ dir, pgdata string }

// spoolFor returns the spool of the cluster in pgdata for a
// restore_command destination inside its pg_wal, or nil when DEST is
// elsewhere.
func spoolFor(dest, pgdata string) *spool {
	abs, err := filepath.Abs(dest)
	if err != nil || filepath.Base(filepath.Dir(abs)) != "pg_wal" {
		return nil
	}
	return &spool{dir: filepath.Join(worker.StateDir(pgdata), spoolSubdir), pgdata: pgdata}
}

// entry is one finished spool file.
type entry struct {
	name   wal.Name
	digest string
	file   string
}

func (s *spool) entries() []entry {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var out []entry
	for _, de := range des {
		base, digest, ok := strings.Cut(de.Name(), ".")
		if !ok || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		n, err := wal.ParseName(base)
		if err != nil || n.Kind != wal.Segment || len(digest) != 8 {
			os.Remove(filepath.Join(s.dir, de.Name()))
			continue
		}
		out = append(out, entry{name: n, digest: digest, file: filepath.Join(s.dir, de.Name())})
	}
	return out
}

// has reports whether the spool holds a finished copy of n.
func (s *spool) has(n wal.Name) bool {
	for _, e := range s.entries() {
		if e.name == n {
			return true
		}
	}
	return false
}

// take moves the spooled copy of n to dest if there is one that still
// hashes to the digest in its name and is the right segment. It returns
// the size served.
func (s *spool) take(n wal.Name, dest string) (int64, bool) {
	for _, e := range s.entries() {
		if e.name != n {
			continue
		}
		size, err := verifyFile(n, e.file, e.digest)
		if err != nil {
			os.Remove(e.file)
			return 0, false
		}
		if err := moveFile(e.file, dest); err != nil {
			os.Remove(e.file)
			return 0, false
		}
		return size, true
	}
	return 0, false
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func verifyFile(n wal.Name, path, sum string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	size, err := io.Copy(h, f)
	if err != nil {
		return 0, err
	}
	if fmt.Sprintf("%08x", h.Sum32()) != sum {
		return 0, errors.New("spooled file does not match its checksum")
	}
	return size, checkContent(n, size, path)
}

// prune removes every spooled file that can no longer be asked for next:
// on another timeline than the segment just served, or not after it.
func (s *spool) prune(served wal.Name) {
	for _, e := range s.entries() {
		if e.name.TLI != served.TLI || wal.Compare(e.name, served) <= 0 {
			os.Remove(e.file)
		}
	}
}

// clear removes every spooled file.
func (s *spool) clear() {
	for _, e := range s.entries() {
		os.Remove(e.file)
	}
}

// removeTemps drops dot files left by a prefetcher that died mid-write.
func (s *spool) removeTemps() {
	des, _ := os.ReadDir(s.dir)
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, ".") && n != lockFile && n != wantFile && !strings.HasSuffix(n, ".claim") {
			os.Remove(filepath.Join(s.dir, n))
		}
	}
}

// want is the last segment walfetch served: the prefetcher fetches what
// follows it.
type want struct {
	Name    string    `json:"name"`
	SegSize int64     `json:"segment_size"`
	At      time.Time `json:"at"`
}

func (s *spool) writeWant(n wal.Name, segSize int64) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(want{Name: n.String(), SegSize: segSize, At: time.Now()})
	tmp := filepath.Join(s.dir, ".want.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, wantFile))
}

func (s *spool) readWant() (want, wal.Name, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, wantFile))
	if err != nil {
		return want{}, wal.Name{}, false
	}
	var w want
	if json.Unmarshal(b, &w) != nil || !wal.ValidSegmentSize(w.SegSize) {
		return want{}, wal.Name{}, false
	}
	n, err := wal.ParseName(w.Name)
	if err != nil || n.Kind != wal.Segment {
		return want{}, wal.Name{}, false
	}
	return w, n, true
}

func (s *spool) lockPath() string { return filepath.Join(s.dir, lockFile) }
func (s *spool) claimPath(n wal.Name) string {
	return filepath.Join(s.dir, "."+n.String()+".claim")
}

// inFlight reports whether the prefetcher is fetching n right now.
func (s *spool) inFlight(n wal.Name) bool { return flock.Held(s.claimPath(n)) }

// announce records that segment n is being served, so that the
// prefetcher works on what follows it, and makes sure one is running. It
// runs before a fetch from the archive too, so both proceed in parallel.
// The segment size comes from the served file or, before it is known, from
// the previous announcement.
func (c *Config) announce(s *spool, n wal.Name, size int64) {
	if c.Prefetch <= 0 || c.Spawn == nil {
		return
	}
	if !wal.ValidSegmentSize(size) {
		w, _, ok := s.readWant()
		if !ok {
			return // first call: the size is learnt from this segment
		}
		size = w.SegSize
	}
	if err := s.writeWant(n, size); err != nil {
		c.Log.Info("prefetch disabled for this call", "error", err.Error())
		return
	}
	if flock.Held(s.lockPath()) {
		return // a prefetcher is running and will read the new want
	}
	if err := c.Spawn(s.dir, s.pgdata); err != nil {
		c.Log.Info("cannot start the prefetcher", "error", err.Error())
	}
}

// moveFile renames src to dest, or copies it when they are on different
// file systems (pg_wal on a volume of its own); dest appears whole or not
// at all.
func moveFile(src, dest string) error {
	err := os.Rename(src, dest)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".walfetch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return err
	}
	return os.Remove(src)
}
