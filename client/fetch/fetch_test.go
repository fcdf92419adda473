package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/fetch"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

const segSize = 1 << 20

// setup archives real segments and returns a fetch config whose prefetcher
// runs in this process, the archive, and a PGDATA with a pg_wal.
func setup(t *testing.T, segs []string) (fetch.Config, *archive.Archive, string) {
	cfg, a, pgdata, _ := setupCounting(t, segs)
	return cfg, a, pgdata
}

// setupCounting is setup that also counts running prefetchers.
func setupCounting(t *testing.T, segs []string) (fetch.Config, *archive.Archive, string, *atomic.Int32) {
	fs, err := filestore.Open(t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := archive.New(fs, "main")
	for _, s := range segs {
		putFile(t, a, filepath.Base(s), mustRead(t, s))
	}
	pgdata := t.TempDir()
	os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700)
	os.WriteFile(filepath.Join(pgdata, "recovery.signal"), nil, 0o600)
	// A live "postmaster" (this test process): the spool is used only
	// while PostgreSQL is recovering.
	os.WriteFile(filepath.Join(pgdata, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cfg := fetch.Config{
		Open:     func(context.Context) (*archive.Archive, error) { return a, nil },
		Prefetch: 4,
		Timeout:  time.Minute,
	}
	running := &atomic.Int32{}
	cfg.Spawn = func(dir, pgdata string) error {
		running.Add(1)
		wg.Go(func() {
			defer running.Add(-1)
			fetch.RunPrefetcher(ctx, cfg, dir, pgdata)
		})
		return nil
	}
	return cfg, a, pgdata, running
}

// At the end of the archive (a standby waiting for new WAL), the
// prefetcher does not poll forever: it exits once nothing new comes.
func TestPrefetcherExitsAtEndOfArchive(t *testing.T) {
	segs := segments(t, 2)
	cfg, _, pgdata, running := setupCounting(t, segs)
	fetchOne(t, cfg, pgdata, filepath.Base(segs[1]))
	if running.Load() != 1 {
		t.Fatalf("%d prefetchers running, want 1", running.Load())
	}
	testenv.WaitFor(t, 3*fetch.PrefetchIdle, "the prefetcher to exit", func() bool { return running.Load() == 0 })
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putFile(t *testing.T, a *archive.Archive, name string, data []byte) {
	n, err := wal.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := wal.ParsePageHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	enc := envelope.NewEncoder()
	enc.SystemID = hdr.SystemID
	obj, _ := enc.EncodeBytes(data, a.Layout.WAL(n))
	if _, err := a.PutWAL(context.Background(), n, obj); err != nil {
		t.Fatal(err)
	}
}

func spoolFiles(pgdata string) []string {
	m, _ := filepath.Glob(filepath.Join(worker.StateDir(pgdata), "prefetch", "0*"))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

func spoolFile(t *testing.T, pgdata, name string) string {
	m, _ := filepath.Glob(filepath.Join(worker.StateDir(pgdata), "prefetch", name+".*"))
	if len(m) != 1 {
		t.Fatalf("spool has %v for %s", m, name)
	}
	return m[0]
}

// fetchOne plays restore_command and returns what PostgreSQL would read.
func fetchOne(t *testing.T, cfg fetch.Config, pgdata, name string) (fetch.Result, []byte) {
	t.Helper()
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	res, err := fetch.Fetch(context.Background(), cfg, name, dest)
	if err != nil {
		t.Fatalf("fetch %s: %v", name, err)
	}
	b := mustRead(t, dest)
	os.Remove(dest)
	return res, b
}

// A spooled file that was truncated or altered after the prefetcher
// verified it is never handed over: the segment comes from the archive.
func TestTamperedSpoolFilesAreNeverUsed(t *testing.T) {
	segs := segments(t, 6)
	cfg, _, pgdata := setup(t, segs)
	name := func(i int) string { return filepath.Base(segs[i]) }
	fetchOne(t, cfg, pgdata, name(0))
	testenv.WaitFor(t, time.Minute, "the prefetcher to spool four segments", func() bool { return len(spoolFiles(pgdata)) == 4 })

	corrupt := spoolFile(t, pgdata, name(2))
	b := mustRead(t, corrupt)
	b[len(b)/2] ^= 0x01
	os.WriteFile(corrupt, b, 0o600)
	os.Truncate(spoolFile(t, pgdata, name(3)), segSize/2)

	for i := 1; i < len(segs); i++ {
		res, got := fetchOne(t, cfg, pgdata, name(i))
		if !bytes.Equal(got, mustRead(t, segs[i])) {
			t.Fatalf("%s: PostgreSQL would have read different bytes (from spool: %v)", name(i), res.FromSpool)
		}
		// A tampered file is dropped; what is served for it comes from the
		// archive (directly, or as a fresh copy the prefetcher verified),
		// which the byte comparison above proves.
		if i == 1 && !res.FromSpool {
			t.Errorf("%s: expected a spool hit", name(i))
		}
	}
}

// After a switch to a new timeline, spooled segments of the old one are
// dropped and the new timeline's segments are what PostgreSQL gets.
func TestTimelineSwitchDropsStaleSpool(t *testing.T) {
	segs := segments(t, 6)
	cfg, a, pgdata := setup(t, segs)
	// Timeline 2 forks at the 4th segment: same positions, other bytes.
	tl2 := map[string][]byte{}
	for _, s := range segs[3:] {
		b := mustRead(t, s)
		b[len(b)-100] ^= 0xFF
		n := "00000002" + filepath.Base(s)[8:]
		tl2[n] = b
		putFile(t, a, n, b)
	}
	fetchOne(t, cfg, pgdata, filepath.Base(segs[1]))
	fetchOne(t, cfg, pgdata, filepath.Base(segs[2]))
	testenv.WaitFor(t, time.Minute, "timeline 1 segments in the spool", func() bool {
		for _, f := range spoolFiles(pgdata) {
			if strings.HasPrefix(f, "00000001") && strings.HasPrefix(f[8:], filepath.Base(segs[3])[8:]) {
				return true
			}
		}
		return false
	})
	for _, s := range segs[3:] {
		n := "00000002" + filepath.Base(s)[8:]
		_, got := fetchOne(t, cfg, pgdata, n)
		if !bytes.Equal(got, tl2[n]) {
			t.Fatalf("%s: got the wrong timeline's bytes", n)
		}
		// A timeline 1 fetch already running at the switch may land a
		// moment later; it is never served (only exact names are, and the
		// bytes above prove it) and must be gone promptly.
		testenv.WaitFor(t, 2*time.Second, "timeline 1 files to leave the spool", func() bool {
			for _, f := range spoolFiles(pgdata) {
				if strings.HasPrefix(f, "00000001") {
					return false
				}
			}
			return true
		})
	}
}

// Not found is exit-1 material; nothing is written.
func TestMissingIsNotFoundAndWritesNothing(t *testing.T) {
	segs := segments(t, 1)
	cfg, _, pgdata := setup(t, segs)
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	_, err := fetch.Fetch(context.Background(), cfg, "000000010000000000000FFF", dest)
	if !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("DEST written")
	}
}

// segments writes n synthetic 1 MiB segments (valid long page headers,
// WAL-like content) from 000000010000000000000002 on.
func segments(t *testing.T, n int) []string {
	t.Helper()
	segs, err := waltest.WriteSegments(t.TempDir(), waltest.Name("000000010000000000000002"), n, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// In archive recovery, "not found" in an archive that never received a
// segment is a wrong --archive or --repo: said so, and not ErrNotFound
// (PostgreSQL would take it for the end of the WAL and promote).
func TestEmptyArchiveIsNotTheEndOfTheWAL(t *testing.T) {
	cfg, _, pgdata := setup(t, nil)
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	_, err := fetch.Fetch(context.Background(), cfg, "000000010000000000000002", dest)
	if err == nil || errors.Is(err, errkind.ErrNotFound) || !strings.Contains(err.Error(), "never received a segment") {
		t.Fatalf("got %v, want a wrong-archive error", err)
	}
	// On a standby it stays "not found": it waits for the first segment.
	os.Remove(filepath.Join(pgdata, "recovery.signal"))
	os.WriteFile(filepath.Join(pgdata, "standby.signal"), nil, 0o600)
	if _, err := fetch.Fetch(context.Background(), cfg, "000000010000000000000002", dest); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("standby: got %v, want ErrNotFound", err)
	}
}
