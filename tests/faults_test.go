package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/fetch"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// checkStoreClean lists the store and reads every object back in full:
// nothing visible may be torn, temporary or corrupt.
func checkStoreClean(t *testing.T, s store.Store, prefix string) int {
	t.Helper()
	n := 0
	err := s.List(context.Background(), prefix, func(i store.Info) error {
		n++
		if strings.Contains(i.Key, "/.") || strings.Contains(i.Key, "tmp") {
			return fmt.Errorf("temporary object visible: %s", i.Key)
		}
		hdr, rc, err := archive.OpenObject(context.Background(), s, i.Key, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", i.Key, err)
		}
		defer rc.Close()
		if hdr.ObjectSize() != i.Size {
			return fmt.Errorf("%s: %d bytes listed, header says %d", i.Key, i.Size, hdr.ObjectSize())
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			return fmt.Errorf("%s: %w", i.Key, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// walstored is killed with SIGKILL at random moments while a real
// PostgreSQL archives more than 100 segments, and restarted each time.
// Every segment PostgreSQL marked .done is in the archive and verifies,
// and nothing torn or temporary is visible.
func TestWalstoredKilledWhileArchiving(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	r := repo{url: ws.URL, extra: []string{"--timeout", "30s"}}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	first := c.SwitchWAL()

	stop := make(chan struct{})
	var kills atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(150+rand.IntN(900)) * time.Millisecond):
			}
			ws.Kill9(t)
			kills.Add(1)
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
			ws.Start(t)
		}
	})
	var last string
	for i := 0; i < 110 || kills.Load() < 10; i++ {
		if i > 1000 {
			t.Fatalf("only %d kills after %d segments", kills.Load(), i)
		}
		insertBatch(c, i, 800)
		last = c.SwitchWAL()
		time.Sleep(30 * time.Millisecond)
	}
	c.WaitArchived(last, 4*time.Minute)
	close(stop)
	wg.Wait()

	fs, _ := filestore.Open(repoDir, filestore.Options{})
	a, _ := archive.New(fs, "main")
	verifySegments(t, a, first, last, 1<<20)
	objects := checkStoreClean(t, fs, "main/")
	t.Logf("walstored killed %d times; %d objects, all whole", kills.Load(), objects)
}

// The file store's file system fills up: walpush fails with a clear
// message, nothing partial is left, and archiving resumes once space is
// freed.
func TestFileStoreFull(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	mnt := filepath.Join(dir, "small")
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs for the store (the test runs as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(mnt, "repo"), "--cache-size", "0")
	r := repo{url: ws.URL, extra: []string{"--timeout", "5s", "--jobs", "1"}}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	first := c.SwitchWAL()
	insertBatch(c, 0, 2000)
	c.WaitArchived(c.SwitchWAL(), time.Minute)

	filler := filepath.Join(mnt, "filler")
	exec.Command("dd", "if=/dev/urandom", "of="+filler, "bs=64k").Run() // until ENOSPC
	insertBatch(c, 1, 4000)
	waiting := c.SwitchWAL()
	testenv.WaitFor(t, time.Minute, "archiving to fail", func() bool {
		return c.QueryInt("SELECT failed_count FROM pg_stat_archiver") > 0
	})
	res := testenv.Run(t, c.Dir, nil, bins.WalPush, r.args(filepath.Join(c.Dir, "pg_wal", waiting))...)
	if res.Code != 3 || !strings.Contains(res.Stderr, "no space left") || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
		t.Fatalf("walpush on a full store: exit %d, %q; want exit 3 and one line saying there is no space", res.Code, res.Stderr)
	}
	if !strings.Contains(ws.Log(), "status=507") {
		t.Error("walstored did not answer 507")
	}
	fs, _ := filestore.Open(filepath.Join(mnt, "repo"), filestore.Options{})
	checkStoreClean(t, fs, "main/")
	leftovers, _ := filepath.Glob(filepath.Join(mnt, "repo", "main", "wal", ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	os.Remove(filler)
	insertBatch(c, 2, 1000)
	last := c.SwitchWAL()
	c.WaitArchived(last, 2*time.Minute)
	a, _ := archive.New(fs, "main")
	verifySegments(t, a, first, last, 1<<20)
}

// A stored object corrupted on disk is never written to DEST and never
// reported as "not found"; walstored verify names it.
func TestCorruptObjectRefused(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--cache-size", "0")
	r := repo{url: ws.URL}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 3000)
	seg := c.SwitchWAL()
	c.WaitArchived(seg, time.Minute)
	c.Stop()

	p := filepath.Join(repoDir, "main", "wal", seg)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-len(b)/3] ^= 0x5A // inside the payload
	os.WriteFile(p, b, 0o640)

	pgdata := testenv.Dir(t)
	os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700)
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	args := []string{"--repo", ws.URL, "--timeout", "3s", seg, dest}
	res := testenv.Run(t, pgdata, nil, bins.WalFetch, args...)
	if res.Code == 0 || res.Code == 1 || !strings.Contains(res.Stderr, "corrupt") {
		t.Fatalf("fetch of a corrupt object: exit %d %q; want neither 0 nor 1, and the word corrupt", res.Code, res.Stderr)
	}
	os.WriteFile(filepath.Join(pgdata, "recovery.signal"), nil, 0o600)
	if res := testenv.Run(t, pgdata, nil, bins.WalFetch, args...); res.Code != 200 {
		t.Fatalf("in archive recovery: exit %d, want 200 (fatal for PostgreSQL)", res.Code)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("the corrupt object reached DEST")
	}
	if entries, _ := os.ReadDir(filepath.Join(pgdata, "pg_wal")); len(entries) != 0 {
		t.Fatalf("pg_wal holds %v", entries)
	}
	v := admin(t, r, "verify")
	if v.Code != 1 || !strings.Contains(v.Stderr, "main/wal/"+seg) {
		t.Fatalf("verify: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
}

// Eight standby-style fetchers follow the archive while a real primary
// pushes into it, for a minute, against walstored in this process (so the
// race detector watches the server).
func TestLoadFetchersAndPusher(t *testing.T) {
	dir := testenv.Dir(t)
	fs, err := filestore.Open(filepath.Join(dir, "repo"), filestore.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Config{Store: fs}))
	defer srv.Close()
	r := repo{url: srv.URL, extra: []string{"--jobs", "2"}}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	first := c.SwitchWAL()
	c.WaitArchived(first, time.Minute)

	hs, _ := httpstore.New(srv.URL, httpstore.Options{})
	a, _ := archive.New(hs, "main")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var lastArchived atomic.Value
	lastArchived.Store(first)
	var wg sync.WaitGroup
	reached := make([]atomic.Value, 8)
	for i := range 8 {
		pgdata := filepath.Join(dir, fmt.Sprintf("standby%d", i))
		os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700)
		os.WriteFile(filepath.Join(pgdata, "standby.signal"), nil, 0o600)
		cfg := fetch.Config{Open: func(context.Context) (*archive.Archive, error) { return a, nil }, Timeout: 30 * time.Second}
		wg.Go(func() {
			n, _ := wal.ParseName(first)
			dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
			for ctx.Err() == nil {
				_, err := fetch.Fetch(ctx, cfg, n.String(), dest)
				switch {
				case err == nil:
					reached[i].Store(n.String())
					n = n.Next(1 << 20)
				case errors.Is(err, errkind.ErrNotFound):
					time.Sleep(50 * time.Millisecond)
				case ctx.Err() == nil:
					t.Errorf("fetcher %d, %s: %v", i, n, err)
					return
				}
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for b := 0; time.Now().Before(deadline); b++ {
		insertBatch(c, b, 1500)
		lastArchived.Store(c.SwitchWAL())
		time.Sleep(100 * time.Millisecond)
	}
	last := lastArchived.Load().(string)
	c.WaitArchived(last, time.Minute)
	testenv.WaitFor(t, time.Minute, "every fetcher to reach "+last, func() bool {
		for i := range reached {
			if s, _ := reached[i].Load().(string); s < last {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	t.Logf("8 fetchers followed %s..%s while it was pushed", first, last)
}
