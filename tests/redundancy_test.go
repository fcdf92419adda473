package tests

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/s3store"
	"github.com/walstore/walstore/tests/testenv"
)

func storeKeys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.List(context.Background(), prefix, func(i store.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// Two stores behind one walstored (a directory and MinIO): pushes land in
// both; with MinIO down they fail by default and succeed on a quorum when
// opted in; sync fills the gap; a PITR restore works with either store
// alone; a corrupt copy in one store is served from the other and reported.
func TestTwoStores(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(t0).Seconds(), what) }
	m := testenv.StartMinIO(t)
	dirURL, s3URL := "file://"+filepath.Join(dir, "repo"), m.URL("mirror")
	both := []string{"--store", dirURL, "--store", s3URL}
	ws := testenv.StartWalstored(t, m.Env(), append(both, "--sync-interval", "0")...)
	r := repo{url: ws.URL, extra: []string{"--timeout", "10s"}}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 1000)
	takeBackup(t, r, c)
	first := c.SwitchWAL()
	var last string
	for i := 1; i <= 20; i++ {
		insertBatch(c, i, 300)
		last = c.SwitchWAL()
	}
	c.WaitArchived(last, time.Minute)
	fs, _ := filestore.Open(filepath.Join(dir, "repo"), filestore.Options{})
	s3, err := s3store.Open(context.Background(), s3URL, s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := storeKeys(t, fs, "main/"), storeKeys(t, s3, "main/"); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("the stores differ:\n dir %v\n s3  %v", a, b)
	}
	for _, st := range []store.Store{fs, s3} {
		a, _ := archive.New(st, "main")
		verifySegments(t, a, first, last, 1<<20)
	}

	phase("MinIO down: the default policy")
	// MinIO down: the default policy fails the push; PostgreSQL keeps the WAL.
	m.Stop(t)
	insertBatch(c, 30, 300)
	waiting := c.SwitchWAL()
	testenv.WaitFor(t, time.Minute, "archiving to fail", func() bool {
		return c.QueryInt("SELECT failed_count FROM pg_stat_archiver") > 0
	})
	res := testenv.Run(t, c.Dir, nil, bins.WalPush, r.args("--jobs", "1", filepath.Join(c.Dir, "pg_wal", waiting))...)
	if res.Code != 3 || !strings.Contains(res.Stderr, "stores have it") {
		t.Fatalf("push with one store down: exit %d %q; want 3 saying how many stores have it", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "pg_wal", "archive_status", waiting+".ready")); err != nil {
		t.Fatalf("PostgreSQL no longer holds %s for archiving: %v", waiting, err)
	}

	phase("Opt in to a quorum of one")
	// Opt in to a quorum of one: archiving goes on, MinIO is owed.
	ws.Stop(t)
	wq := testenv.StartWalstored(t, m.Env(), append(both, "--quorum", "1", "--sync-interval", "0")...)
	c.Exec("ALTER SYSTEM SET archive_command = '" + repo{url: wq.URL, extra: r.extra}.archiveCommand(bins) + "'")
	c.Exec("SELECT pg_reload_conf()")
	c.WaitArchived(waiting, time.Minute)
	resp, err := http.Get(wq.URL + "/v1/stores")
	if err != nil {
		t.Fatal(err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(health), `"up":false`) || strings.Contains(string(health), `"owed_objects":0}]`) {
		t.Fatalf("store health with MinIO down: %s", health)
	}

	phase("MinIO back: sync copies")
	// MinIO back: sync copies what it missed.
	m.Restart(t)
	res = testenv.Run(t, dir, m.Env(), bins.WalStored, append([]string{"sync"}, both...)...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "into s3://") {
		t.Fatalf("sync: exit %d %s %s", res.Code, res.Stdout, res.Stderr)
	}
	if a, b := storeKeys(t, fs, "main/"), storeKeys(t, s3, "main/"); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("the stores still differ after sync: %d vs %d objects", len(a), len(b))
	}
	all := c.QueryInt("SELECT count(*) FROM ledger")
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	testenv.Run(t, dir, m.Env(), bins.WalStored, append([]string{"sync"}, both...)...)
	c.Kill9()

	phase("Either store alone")
	// Either store alone is enough for a restore.
	for _, only := range []string{dirURL, s3URL} {
		one := testenv.StartWalstored(t, m.Env(), "--store", only)
		rc := restore(t, repo{url: one.URL}, dir, "only-"+strings.SplitN(only, ":", 2)[0])
		rc.AutoConf("archive_mode = off") // its archive_command points at a stopped walstored
		rc.Start()
		rc.WaitRecovered(3 * time.Minute)
		if got := rc.QueryInt("SELECT count(*) FROM ledger"); got != all {
			t.Fatalf("restore from %s alone: %d rows, want %d", only, got, all)
		}
		rc.Stop()
		one.Stop(t)
		phase("restored from " + only)
	}

	phase("A copy corrupted in the directory store")
	// A copy corrupted in the directory store is served from MinIO.
	p := filepath.Join(dir, "repo", "main", "wal", last)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xFF
	os.WriteFile(p, b, 0o640)
	wq.Stop(t)
	wc := testenv.StartWalstored(t, m.Env(), append(both, "--sync-interval", "0")...)
	dest := filepath.Join(testenv.Dir(t), last)
	if res := testenv.Run(t, dir, nil, bins.WalFetch, "--repo", wc.URL, last, dest); res.Code != 0 {
		t.Fatalf("fetch with one corrupt copy: exit %d %s", res.Code, res.Stderr)
	}
	_, good, _ := archive.OpenObject(context.Background(), s3, "main/wal/"+last, nil)
	want, _ := io.ReadAll(good)
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("fetched bytes differ from the good copy")
	}
	if !strings.Contains(wc.Log(), "corrupt copy in one store") {
		t.Fatal("the corrupt copy was not reported in the log")
	}
	mresp, _ := http.Get(wc.URL + "/metrics")
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), `walstore_store_corrupt_copies_total{store="file://`) {
		t.Fatal("the corrupt copy is not counted in the metrics")
	}
}

// Encryption at rest: nothing of the rows reaches the store in clear, a
// restore with the key works, the wrong key fails clearly and never looks
// like "not found".
func TestEncryptionAtRest(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	keyText := testenv.Run(t, dir, nil, bins.WalStored, "key").Stdout
	keyFile := filepath.Join(dir, "main.key")
	os.WriteFile(keyFile, []byte(keyText), 0o600)
	testenv.Chown(t, keyFile)
	otherKey := filepath.Join(dir, "other.key")
	os.WriteFile(otherKey, []byte(testenv.Run(t, dir, nil, bins.WalStored, "key").Stdout), 0o600)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	r := repo{url: ws.URL, extra: []string{"--encryption-key-file", keyFile}}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(`CREATE TABLE secrets (v text)`)
	c.Exec(`INSERT INTO secrets SELECT 'walstore-secret-marker-42 ' || g FROM generate_series(1, 20000) g`)
	res := admin(t, r, "backup", "--pg", c.ConnString(), "--encryption-key-file", keyFile)
	if res.Code != 0 {
		t.Fatalf("backup: %s", res.Stderr)
	}
	c.Exec(`INSERT INTO secrets SELECT 'walstore-secret-marker-42 again ' || g FROM generate_series(1, 20000) g`)
	seg := c.SwitchWAL()
	c.WaitArchived(seg, time.Minute)
	rows := c.QueryInt("SELECT count(*) FROM secrets")

	// The same segment pushed without a key (another archive) shows the
	// marker: the search below would find it if it were there.
	plainDir := testenv.Dir(t)
	walFile := filepath.Join(plainDir, seg)
	testenv.Run(t, dir, nil, bins.WalFetch, "--repo", ws.URL, "--encryption-key-file", keyFile, seg, walFile)
	if pr := testenv.Run(t, dir, nil, bins.WalPush, "--repo", ws.URL, "--archive", "plain", "--jobs", "1", walFile); pr.Code != 0 {
		t.Fatalf("plain push: %s", pr.Stderr)
	}
	marker := []byte("walstore-secret-marker-42")
	found := map[string]bool{}
	filepath.Walk(repoDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, marker) {
				found[strings.TrimPrefix(p, repoDir+"/")] = true
			}
		}
		return nil
	})
	if !found["plain/wal/"+seg] {
		t.Fatal("sanity check: the marker is not visible even in the unencrypted copy")
	}
	delete(found, "plain/wal/"+seg)
	if len(found) > 0 {
		t.Fatalf("plaintext found in encrypted objects: %v", found)
	}
	c.Kill9()

	// Wrong key: a clear failure, never exit 1, nothing written.
	pgdata := testenv.Dir(t)
	os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700)
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	wrong := testenv.Run(t, pgdata, nil, bins.WalFetch, "--repo", ws.URL, "--encryption-key-file", otherKey, "--timeout", "3s", seg, dest)
	if wrong.Code == 0 || wrong.Code == 1 || !strings.Contains(wrong.Stderr, "encrypted with key") {
		t.Fatalf("wrong key: exit %d %q", wrong.Code, wrong.Stderr)
	}
	os.WriteFile(filepath.Join(pgdata, "recovery.signal"), nil, 0o600)
	if res := testenv.Run(t, pgdata, nil, bins.WalFetch, "--repo", ws.URL, "--encryption-key-file", otherKey, seg, dest); res.Code != 200 {
		t.Fatalf("wrong key in archive recovery: exit %d, want 200", res.Code)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("a wrong-key fetch wrote DEST")
	}

	// Verify without the key checks what it can; with it, everything.
	if v := admin(t, repo{url: ws.URL}, "verify"); v.Code != 0 || !strings.Contains(v.Stdout, "skipped") {
		t.Fatalf("keyless verify: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	if v := admin(t, r, "verify", "--encryption-key-file", keyFile); v.Code != 0 || strings.Contains(v.Stdout, "skipped") {
		t.Fatalf("verify with the key: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}

	// A restore with the key recovers every row.
	rc := restore(t, r, dir, "restored")
	rc.Start()
	rc.WaitRecovered(3 * time.Minute)
	if got := rc.QueryInt("SELECT count(*) FROM secrets"); got != rows {
		t.Fatalf("restore with the key: %d rows, want %d", got, rows)
	}
}
