package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// admin runs a walstored admin command against r and returns its result.
func admin(t *testing.T, r repo, args ...string) testenv.Result {
	t.Helper()
	bins := testenv.Binaries(t)
	full := append(append([]string{args[0], "--repo", r.url, "--archive", "main"}, r.authArgs()...), args[1:]...)
	return testenv.Run(t, testenv.Dir(t), r.env, bins.WalStored, full...)
}

// takeBackup runs walstored backup and returns the new backup's id.
func takeBackup(t *testing.T, r repo, c *testenv.Cluster) string {
	t.Helper()
	id, _ := takeBackupRes(t, r, c)
	return id
}

// takeBackupRes is takeBackup that also returns the command's result.
func takeBackupRes(t *testing.T, r repo, c *testenv.Cluster) (string, testenv.Result) {
	t.Helper()
	res := admin(t, r, "backup", "--pg", c.ConnString())
	if res.Code != 0 {
		t.Fatalf("walstored backup: exit %d: %s%s", res.Code, res.Stderr, res.Stdout)
	}
	m := regexp.MustCompile(`backup (\d{8}T\d{6}Z\S*) of archive main: (\d+) files`).FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("no summary line in %q", res.Stdout)
	}
	return m[1], res
}

// restore runs walfetch restore into a fresh directory and opens the
// restored cluster (not started).
func restore(t *testing.T, r repo, parent, name string, extra ...string) *testenv.Cluster {
	t.Helper()
	c, _ := restoreOut(t, r, parent, name, extra...)
	return c
}

// restoreOut is restore that also returns what walfetch restore printed.
func restoreOut(t *testing.T, r repo, parent, name string, extra ...string) (*testenv.Cluster, string) {
	t.Helper()
	bins := testenv.Binaries(t)
	dir := filepath.Join(testenv.PostgresDir(t, parent, name+"-parent"), name)
	args := append([]string{"restore", "--repo", r.url, "--archive", "main", "--pgdata", dir, "--owner", "postgres"}, r.keyArgs()...)
	args = append(args, extra...)
	res := testenv.Run(t, parent, r.env, bins.WalFetch, args...)
	if res.Code != 0 {
		t.Fatalf("walfetch restore: exit %d: %s", res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "pg_ctl -D "+dir) {
		t.Fatalf("restore did not print the command to start PostgreSQL: %q", res.Stdout)
	}
	c := testenv.OpenCluster(t, dir)
	c.Env = r.env
	return c, res.Stdout
}

// backupScenario: backup → more writes → crash → walfetch restore into an
// empty directory → PostgreSQL recovers every archived row; a second
// restore to --target-time has exactly the rows before it.
func backupScenario(t *testing.T, r repo) {
	dir := testenv.Dir(t)
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	c.Run("pgbench", "-i", "-s", "4", "-q")
	insertBatch(c, 0, 2000)
	id := takeBackup(t, r, c)

	insertBatch(c, 1, 3000)
	time.Sleep(1100 * time.Millisecond)
	target := c.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	time.Sleep(1100 * time.Millisecond)
	insertBatch(c, 2, 3000)
	before := c.QueryInt("SELECT count(*) FROM ledger WHERE batch < 2")
	all := c.QueryInt("SELECT count(*) FROM ledger")
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	c.Kill9()

	res := testenv.Run(t, dir, r.env, testenv.Binaries(t).WalFetch, "restore", "--repo", r.url, "--archive", "main",
		"--pgdata", filepath.Join(dir, "nowhere"), "--dry-run", "--owner", "postgres")
	if res.Code != 0 || !strings.Contains(res.Stdout, "would restore backup "+id) {
		t.Fatalf("dry run: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); !os.IsNotExist(err) {
		t.Fatal("--dry-run wrote the data directory")
	}

	full := restore(t, r, dir, "full")
	for _, f := range []string{"PG_VERSION", "global/pg_control", "backup_label", "backup_manifest", "recovery.signal", "pg_wal/archive_status"} {
		if _, err := os.Stat(filepath.Join(full.Dir, f)); err != nil {
			t.Fatalf("restored PGDATA lacks %s: %v", f, err)
		}
	}
	if fi, _ := os.Stat(full.Dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored PGDATA has mode %v", fi.Mode().Perm())
	}
	full.Start()
	full.WaitRecovered(3 * time.Minute)
	if got := full.QueryInt("SELECT count(*) FROM ledger"); got != all {
		t.Fatalf("after restore and recovery: %d rows, want %d", got, all)
	}
	full.Stop()

	pitr := restore(t, r, dir, "pitr", "--target-time", target)
	pitr.Start()
	pitr.WaitRecovered(3 * time.Minute)
	if got := pitr.QueryInt("SELECT count(*) FROM ledger"); got != before {
		t.Fatalf("PITR to %s: %d rows, want exactly the %d before it", target, got, before)
	}
}

func TestBackupRestoreThroughWalstored(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	backupScenario(t, repo{url: ws.URL})
}

func TestBackupRestoreDirectMinIO(t *testing.T) {
	t.Parallel()
	m := testenv.SharedMinIO(t)
	testenv.InitRepo(t, m.URL("backups"), m.Env())
	backupScenario(t, repo{url: m.URL("backups"), env: m.Env()})
}

// Three backups with a promotion in between; retention, verify and a PITR
// from the oldest kept backup.
func TestRetentionVerifyAcrossPromotion(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	dir, repoDir, r, p := st.dir, st.repoDir, st.r, st.p
	insertBatch(p, 0, 3000)
	b1 := takeBackup(t, r, p)
	insertBatch(p, 1, 3000)
	p.SwitchWAL()
	b2 := takeBackup(t, r, p)
	insertBatch(p, 2, 3000)
	p.WaitArchived(p.SwitchWAL(), time.Minute)
	p.Kill9()

	// Restore b2, recover to the end, promote: timeline 2 archives into the
	// same archive, then a third backup is taken there.
	r1 := restore(t, r, dir, "r1", "--backup", b2)
	r1.Start()
	r1.WaitRecovered(3 * time.Minute)
	insertBatch(r1, 3, 3000)
	b3 := takeBackup(t, r, r1)
	insertBatch(r1, 4, 3000)
	r1.WaitArchived(r1.SwitchWAL(), time.Minute)
	newest := r1.QueryInt("SELECT count(*) FROM ledger")
	fs, _ := filestore.Open(repoDir, filestore.Options{})
	a, _ := archive.New(fs, "main")
	rec2, err := a.LoadBackup(context.Background(), b2)
	if err != nil {
		t.Fatal(err)
	}

	res := admin(t, r, "retain", "--keep-last", "2", "--json")
	if res.Code != 0 {
		t.Fatalf("retain: exit %d: %s", res.Code, res.Stderr)
	}
	var out struct {
		Kept     []string `json:"kept_backups"`
		Deleted  []string `json:"deleted_backups"`
		WALFiles int      `json:"wal_files_deleted"`
		KeepFrom string   `json:"wal_kept_from"`
	}
	json.Unmarshal([]byte(res.Stdout), &out)
	if strings.Join(out.Kept, ",") != b2+","+b3 || strings.Join(out.Deleted, ",") != b1 || out.WALFiles == 0 {
		t.Fatalf("retain: %s", res.Stdout)
	}
	var lowest string
	a.ListWAL(context.Background(), "", func(n wal.Name, _ store.Info) error {
		if n.Kind == wal.Segment && (lowest == "" || n.SegNo(1<<20) < mustName(lowest).SegNo(1<<20)) {
			lowest = n.String()
		}
		return nil
	})
	if lowest != rec2.StartWAL {
		t.Fatalf("lowest remaining segment %s, want the second backup's start segment %s", lowest, rec2.StartWAL)
	}
	if _, err := fs.Stat(context.Background(), "main/wal/00000002.history"); err != nil {
		t.Fatalf("history file gone: %v", err)
	}
	if list := admin(t, r, "list"); list.Code != 0 || !strings.Contains(list.Stdout, b2) || strings.Contains(list.Stdout, b1) || !strings.Contains(list.Stdout, "timeline 2 (from timeline 1 at") {
		t.Fatalf("list after retain: exit %d\n%s%s", list.Code, list.Stdout, list.Stderr)
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after retain: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}

	// The oldest kept backup still reaches the newest commit, on timeline 2.
	r1.Stop()
	r2 := restore(t, r, dir, "r2", "--backup", b2)
	r2.Start()
	r2.WaitRecovered(3 * time.Minute)
	if got := r2.QueryInt("SELECT count(*) FROM ledger"); got != newest {
		t.Fatalf("PITR from the oldest kept backup: %d rows, want %d", got, newest)
	}
	r2.Stop()

	// A segment missing in the middle: verify fails and names it.
	var victim string
	a.ListWAL(context.Background(), "00000002", func(n wal.Name, _ store.Info) error {
		if n.Kind == wal.Segment && victim == "" {
			victim = n.Next(1 << 20).String()
		}
		return nil
	})
	if err := fs.Delete(context.Background(), "main/wal/"+victim); err != nil {
		t.Fatal(err)
	}
	v := admin(t, r, "verify")
	if v.Code == 0 || !strings.Contains(v.Stderr, victim) {
		t.Fatalf("verify with %s deleted: exit %d\n%s%s", victim, v.Code, v.Stdout, v.Stderr)
	}
}

func mustName(s string) wal.Name {
	n, err := wal.ParseName(s)
	if err != nil {
		panic(err)
	}
	return n
}

// Bad input: one line, non-zero, nothing deleted or half-written.
func TestBackupRestoreRetainRefuseBadInput(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	r := repo{url: ws.URL}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 1000)
	takeBackup(t, r, c)
	fs, _ := filestore.Open(repoDir, filestore.Options{})
	count := func() int {
		n := 0
		fs.List(context.Background(), "main/", func(store.Info) error { n++; return nil })
		return n
	}
	oneLine := func(t *testing.T, what string, res testenv.Result, want string) {
		t.Helper()
		if res.Code == 0 || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 || !strings.Contains(res.Stderr, want) {
			t.Errorf("%s: exit %d, stderr %q; want non-zero and one line with %q", what, res.Code, res.Stderr, want)
		}
	}

	full := testenv.PostgresDir(t, dir, "full")
	os.WriteFile(filepath.Join(full, "PG_VERSION"), []byte("15\n"), 0o600)
	oneLine(t, "restore into a non-empty PGDATA",
		testenv.Run(t, dir, nil, bins.WalFetch, "restore", "--repo", r.url, "--pgdata", full, "--owner", "postgres"), "is not empty")
	if b, _ := os.ReadFile(filepath.Join(full, "PG_VERSION")); string(b) != "15\n" {
		t.Error("the non-empty PGDATA was touched")
	}
	oneLine(t, "unknown backup id",
		testenv.Run(t, dir, nil, bins.WalFetch, "restore", "--repo", r.url, "--backup", "20200101T000000Z", "--pgdata", filepath.Join(dir, "x"), "--owner", "postgres"), "unknown backup")
	oneLine(t, "target time without a zone",
		testenv.Run(t, dir, nil, bins.WalFetch, "restore", "--repo", r.url, "--target-time", "2026-11-24 10:00:00", "--pgdata", filepath.Join(dir, "y"), "--owner", "postgres"), "with its zone")

	off := testenv.NewCluster(t, dir, "noarchive", testenv.ClusterOptions{WalSegSizeMB: 1})
	off.Start()
	before := count()
	oneLine(t, "backup of a cluster with archive_mode off", admin(t, r, "backup", "--pg", off.ConnString()), "archive_mode is \"off\"")
	if count() != before {
		t.Error("a refused backup wrote objects")
	}
	oneLine(t, "retain without --keep-last", admin(t, r, "retain"), "--keep-last")

	// A kept backup's label replaced by garbage: retention stops, deletes
	// nothing.
	inv := admin(t, r, "list", "--json")
	var l struct {
		Backups []archive.Record `json:"backups"`
	}
	json.Unmarshal([]byte(inv.Stdout), &l)
	if len(l.Backups) != 1 {
		t.Fatalf("list: %s", inv.Stdout)
	}
	key := "main/wal/" + l.Backups[0].BackupFile
	fs.Delete(context.Background(), key)
	garbage, _ := envelope.NewEncoder().EncodeBytes([]byte("this is not a backup label\n"), key)
	fs.Put(context.Background(), key, store.Bytes(garbage.Bytes()))
	before = count()
	oneLine(t, "retain with a garbage label", admin(t, r, "retain", "--keep-last", "1"), l.Backups[0].BackupFile)
	if count() != before {
		t.Error("retention deleted objects despite an unreadable label")
	}
	_ = fmt.Sprint
}
