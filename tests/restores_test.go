package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// Restores over a cluster's life (issue 13): a restore of a restored
// cluster, dead branches and their retirement, drills.

// openArchive opens r's archive main as the clients do.
func (r repo) open(t *testing.T) *archive.Archive {
	t.Helper()
	env := map[string]string{}
	for _, kv := range r.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	c := cli.Common{Repo: r.url, Archive: "main", Getenv: func(k string) string { return env[k] }, ReadOnly: true, NoCache: true}
	for i, a := range r.extra {
		if a == "--token-file" && i+1 < len(r.extra) {
			c.TokenFile = r.extra[i+1]
		}
	}
	a, err := c.OpenArchive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// hasTimeline reports whether the archive holds timeline tli's history
// file in recovery's view.
func hasTimeline(t *testing.T, a *archive.Archive, tli uint32) bool {
	t.Helper()
	_, err := a.Store.Stat(context.Background(), a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli}))
	if err != nil && !errors.Is(err, errkind.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// now is the server's clock as a recovery_target_time.
func now(c *testenv.Cluster) string {
	return c.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
}

// archivedTo switches c to a new segment and waits until the one it left
// is archived; it returns the switch position.
func archivedTo(t *testing.T, c *testenv.Cluster) string {
	t.Helper()
	end := c.QueryString("SELECT pg_switch_wal()::text")
	c.WaitArchived(c.QueryString("SELECT pg_walfile_name('"+end+"'::pg_lsn - 1)"), time.Minute)
	return end
}

func TestSecondRestoreOfARestoredCluster(t *testing.T) {
	t.Parallel()
	t.Run("walstored-file", func(t *testing.T) {
		ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(testenv.Dir(t), "repo"))
		secondRestore(t, repo{url: ws.URL})
	})
	t.Run("minio", func(t *testing.T) {
		m := testenv.SharedMinIO(t)
		u := m.URL("second-restore")
		testenv.InitRepo(t, u, m.Env())
		secondRestore(t, repo{url: u, env: m.Env()})
	})
}

// secondRestore is issue 13's first report as a test: a PITR restore is
// started, backed up, and that backup restored as a standby. The standby
// must stay a standby and replay new WAL (not follow the first restore's
// recovery target and promote); a plain restore of the same backup must
// open; the standby adds nothing to the archive.
func secondRestore(t *testing.T, r repo) {
	dir := testenv.Dir(t)
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	insertBatch(p, 1, 1000)
	time.Sleep(1100 * time.Millisecond)
	target := now(p)
	time.Sleep(1100 * time.Millisecond)
	insertBatch(p, 2, 1000)
	archivedTo(t, p)
	p.Stop()

	pitr := restore(t, r, dir, "pitr", "--target-time", target)
	pitr.Start()
	pitr.WaitRecovered(2 * time.Minute)
	if tl := pitr.Timeline(); tl != 2 {
		t.Fatalf("the PITR restore is on timeline %d, want 2", tl)
	}
	insertBatch(pitr, 3, 1000)
	id, res := takeBackupRes(t, r, pitr)
	if !strings.Contains(res.Stderr, "recovery_target_time") {
		t.Fatalf("walstored backup of a cluster carrying a recovery target did not warn: %q", res.Stderr)
	}
	insertBatch(pitr, 4, 1000)
	archivedTo(t, pitr)

	a := r.open(t)
	s, out := restoreOut(t, r, dir, "standby", "--backup", "latest", "--standby", "--wait", "5s")
	if !strings.Contains(out, "removed from postgresql.auto.conf (left by an earlier recovery): recovery_target_time") {
		t.Fatalf("restore did not say it removed the first restore's target:\n%s", out)
	}
	auto, _ := os.ReadFile(filepath.Join(s.Dir, "postgresql.auto.conf"))
	if strings.Contains(string(auto), target) || strings.Count(string(auto), "restore_command") != 1 {
		t.Fatalf("postgresql.auto.conf still carries the first restore's settings:\n%s", auto)
	}
	s.Start()
	insertBatch(pitr, 5, 1000)
	end := archivedTo(t, pitr)
	waitReplayed(t, s, end, 2*time.Minute)
	if s.QueryString("SELECT pg_is_in_recovery()::text") != "true" {
		t.Fatalf("the standby left recovery:\n%s", s.Log())
	}
	if got, want := s.QueryInt("SELECT count(*) FROM ledger"), pitr.QueryInt("SELECT count(*) FROM ledger"); got != want {
		t.Fatalf("standby has %d rows, its primary %d", got, want)
	}
	if strings.Contains(s.Log(), "recovery stopping") {
		t.Fatalf("the standby stopped at a recovery target:\n%s", s.Log())
	}
	if hasTimeline(t, a, 3) {
		t.Fatal("a timeline 3 appeared in the archive while only a standby was added")
	}
	all := pitr.QueryInt("SELECT count(*) FROM ledger")
	pitr.Stop()
	s.Stop()

	plain := restore(t, r, dir, "plain", "--backup", id)
	plain.Start()
	plain.WaitRecovered(2 * time.Minute)
	if got := plain.QueryInt("SELECT count(*) FROM ledger"); got != all {
		t.Fatalf("a plain restore of backup %s has %d rows, want %d:\n%s", id, got, all, plain.Log())
	}
}

// deadBranchSite is an archive whose timeline 3 is a dead branch: it
// forked from timeline 2 after the newest backup, and timeline 2 went on
// past the fork.
type deadBranchSite struct {
	site
	newest string // the newest backup, on timeline 2
	rows   int64  // rows of timeline 2 at its end
}

func newDeadBranchSite(t *testing.T) deadBranchSite {
	// Metrics from a catalog scan every 2 s (default 5 min).
	st := newSiteServing(t, 1, []string{"--scan-interval", "2s"})
	r, p := st.r, st.p
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	insertBatch(p, 1, 1000)
	mid := p.QueryString("SELECT pg_current_wal_lsn()::text")
	insertBatch(p, 2, 1000)
	archivedTo(t, p)
	p.Stop()

	tl2 := restore(t, r, st.dir, "tl2", "--target-lsn", mid)
	tl2.Start()
	tl2.WaitRecovered(2 * time.Minute)
	insertBatch(tl2, 3, 1000)
	b2 := takeBackup(t, r, tl2)
	insertBatch(tl2, 4, 1000)
	fork := tl2.QueryString("SELECT pg_current_wal_lsn()::text")
	archivedTo(t, tl2)

	tl3 := restore(t, r, st.dir, "tl3", "--target-lsn", fork)
	tl3.Start()
	tl3.WaitRecovered(2 * time.Minute)
	if tl := tl3.Timeline(); tl != 3 {
		t.Fatalf("the branch is on timeline %d, want 3", tl)
	}
	insertBatch(tl3, 9, 500)
	archivedTo(t, tl3)
	tl3.Stop()

	insertBatch(tl2, 5, 1000)
	archivedTo(t, tl2)
	rows := tl2.QueryInt("SELECT count(*) FROM ledger")
	tl2.Stop()
	return deadBranchSite{site: st, newest: b2, rows: rows}
}

// looks restores the newest backup with archiving off (a look at the
// archive must not make a branch of its own) and returns its row count.
func (ds deadBranchSite) looks(t *testing.T, name string, extra ...string) int64 {
	t.Helper()
	c := restore(t, ds.r, ds.dir, name, extra...)
	c.AutoConf("archive_mode = off")
	c.Start()
	c.WaitRecovered(2 * time.Minute)
	defer c.Stop()
	if got := c.QueryInt("SELECT count(*) FROM ledger WHERE batch = 9"); got != 0 {
		t.Fatalf("restore %s followed the dead branch (%d of its rows)", name, got)
	}
	return c.QueryInt("SELECT count(*) FROM ledger")
}

// A dead branch is named by verify (which fails), list and archives, and
// the metrics; restore with default options avoids it; retiring it makes
// verify pass and PostgreSQL's own 'latest' work again; bringing it back
// restores every object.
func TestDeadBranchRetired(t *testing.T) {
	t.Parallel()
	ds := newDeadBranchSite(t)
	r := ds.r
	v := admin(t, r, "verify")
	if v.Code != 1 || !strings.Contains(v.Stdout+v.Stderr, "timeline 3 is a dead branch") {
		t.Fatalf("verify with a dead branch: exit %d\n%s%s\n%s", v.Code, v.Stdout, v.Stderr, admin(t, r, "list").Stdout)
	}
	if l := admin(t, r, "list"); !strings.Contains(l.Stdout, "dead branch") {
		t.Fatalf("list does not warn of the dead branch:\n%s", l.Stdout)
	}
	arch := admin(t, r, "archives", "--json")
	var all struct {
		Archives []struct {
			Archive string   `json:"archive"`
			Dead    []uint32 `json:"dead_branches"`
			State   string   `json:"state"`
		} `json:"archives"`
	}
	err := json.Unmarshal([]byte(arch.Stdout), &all)
	sums := all.Archives
	if err != nil || len(sums) != 1 || len(sums[0].Dead) != 1 || sums[0].Dead[0] != 3 || sums[0].State != "dead_branch" {
		t.Fatalf("archives --json: %v %q", err, arch.Stdout)
	}
	testenv.WaitFor(t, time.Minute, "the dead branch in walstored's metrics", func() bool {
		return strings.Contains(metricsText(t, ds.ws.URL, ""), `walstore_archive_dead_branches{archive="main"} 1`)
	})

	if got := ds.looks(t, "default"); got != ds.rows {
		t.Fatalf("a restore of the newest backup with default options has %d rows, timeline 2 ended with %d", got, ds.rows)
	}

	ret := admin(t, r, "timeline", "retire", "--timeline", "3", "--reason", "test: restore that opened by mistake")
	if ret.Code != 0 {
		t.Fatalf("timeline retire: exit %d %s%s", ret.Code, ret.Stdout, ret.Stderr)
	}
	a := r.open(t)
	if hasTimeline(t, a, 3) {
		t.Fatal("timeline 3's history is still in recovery's view")
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after retiring the branch: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	if got := ds.looks(t, "latest", "--target-timeline", "latest"); got != ds.rows {
		t.Fatalf("restore following 'latest' after the retirement has %d rows, want %d", got, ds.rows)
	}
	testenv.WaitFor(t, time.Minute, "the metrics to drop the dead branch", func() bool {
		return strings.Contains(metricsText(t, ds.ws.URL, ""), `walstore_archive_dead_branches{archive="main"} 0`)
	})

	// Reversible: every object comes back, and the branch is reported again.
	back := admin(t, r, "timeline", "restore", "--timeline", "3")
	if back.Code != 0 || !hasTimeline(t, a, 3) {
		t.Fatalf("timeline restore: exit %d %s%s", back.Code, back.Stdout, back.Stderr)
	}
	if v := admin(t, r, "verify"); v.Code != 1 {
		t.Fatalf("verify after bringing the branch back: exit %d", v.Code)
	}
	if ret := admin(t, r, "timeline", "retire", "--timeline", "3"); ret.Code != 0 {
		t.Fatalf("second retire: exit %d %s", ret.Code, ret.Stderr)
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after the second retirement: exit %d\n%s", v.Code, v.Stdout)
	}
}

// drill runs walstored drill --json and returns its exit code and record.
func drill(t *testing.T, r repo) (int, archive.Drill, string) {
	t.Helper()
	res := admin(t, r, "drill", "--json")
	var d archive.Drill
	if res.Code == 0 || strings.HasPrefix(strings.TrimSpace(res.Stdout), "{") {
		if err := json.Unmarshal([]byte(res.Stdout), &d); err != nil {
			t.Fatalf("drill --json: %v: %q %q", err, res.Stdout, res.Stderr)
		}
	}
	return res.Code, d, res.Stderr
}

// The drill restores the newest backup into a scratch directory, has
// PostgreSQL recover it to the end of the archive, reports and records
// it; it fails, naming why, on a missing segment and on a corrupt backup
// part.
func TestRestoreDrill(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	r, p := st.r, st.p
	insertBatch(p, 0, 1000)
	id := takeBackup(t, r, p)
	for i := 1; i <= 4; i++ {
		insertBatch(p, i, 2000)
		p.SwitchWAL()
	}
	last := p.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
	archivedTo(t, p)
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "walstore-drill-*"))

	code, d, stderr := drill(t, r)
	if code != 0 || !d.OK || d.Backup != id {
		t.Fatalf("drill on a good archive: exit %d %+v\n%s", code, d, stderr)
	}
	if d.ReplayedTo.Segment(1, 1<<20).String() < last || d.WALBytes <= 0 || d.Seconds <= 0 {
		t.Fatalf("drill replayed to %s (%d bytes), the archive holds WAL to %s", d.ReplayedTo, d.WALBytes, last)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "walstore-drill-*"))
	if len(after) != len(before) {
		t.Fatalf("the drill left its scratch copy: %v", after)
	}
	testenv.WaitFor(t, time.Minute, "the drill in walstored's metrics", func() bool {
		m := metricsText(t, st.ws.URL, "")
		return strings.Contains(m, `walstore_archive_last_drill_success{archive="main"} 1`) &&
			strings.Contains(m, `walstore_archive_last_drill_duration_seconds{archive="main"}`)
	})

	// A segment in the middle goes missing.
	a := r.open(t)
	lastName, _ := wal.ParseName(last)
	mid, _ := lastName.Prev(1 << 20)
	mid, _ = mid.Prev(1 << 20)
	// Through walstored, so that its cache forgets the segment too.
	ctx := context.Background()
	hs, _ := httpstore.New(st.ws.URL, httpstore.Options{})
	saved, err := os.ReadFile(filepath.Join(st.repoDir, a.Layout.WAL(mid)))
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.Delete(ctx, a.Layout.WAL(mid)); err != nil {
		t.Fatal(err)
	}
	code, d, stderr = drill(t, r)
	if code != 1 || d.OK || !strings.Contains(stderr, "missing") || !strings.Contains(stderr, "segment "+mid.String()+" is missing") {
		t.Fatalf("drill with %s missing: exit %d, %q", mid, code, stderr)
	}
	testenv.WaitFor(t, time.Minute, "the failed drill in walstored's metrics", func() bool {
		return strings.Contains(metricsText(t, st.ws.URL, ""), `walstore_archive_last_drill_success{archive="main"} 0`)
	})
	if err := hs.Put(ctx, a.Layout.WAL(mid), store.Bytes(saved)); err != nil {
		t.Fatal(err)
	}

	// A pack of the newest backup is corrupt.
	parts, _ := filepath.Glob(filepath.Join(st.repoDir, a.Layout.Pack("*")))
	if len(parts) == 0 {
		t.Fatal("no backup packs found")
	}
	b, _ := os.ReadFile(parts[0])
	b[len(b)/2] ^= 0x5a
	os.Chmod(parts[0], 0o644)
	if err := os.WriteFile(parts[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = drill(t, r)
	if code != 1 || !strings.Contains(stderr, "pack "+filepath.Base(parts[0])[:12]) || !strings.Contains(stderr, "corrupt") {
		t.Fatalf("drill with a corrupt pack: exit %d, %q", code, stderr)
	}
}

// pg_rewind --restore-target-wal with walfetch on default settings, 20
// times in a row against copies of one diverged old primary: walstore's
// own files never meet the directories pg_rewind rewrites.
func TestRewindThroughWalfetchTwentyTimes(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	st := newSite(t, 1, "wal_log_hints = on")
	dir, r, p := st.dir, st.r, st.p
	s := st.restoredStandby(t)
	s.AutoConf(fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres'", p.Port))
	s.Start()
	insertBatch(p, 1, 1000)
	waitReplayed(t, s, p.QueryString("SELECT pg_current_wal_flush_lsn()::text"), time.Minute)
	s.Promote()
	insertBatch(s, 2, 1000)
	s.Exec("CHECKPOINT")
	// The old primary goes on alone, over several archived segments that
	// pg_rewind must then read back through walfetch.
	for i := 0; i < 4; i++ {
		insertBatch(p, 3, 2000)
		archivedTo(t, p)
	}
	p.Stop()
	template := filepath.Join(testenv.PostgresDir(t, dir, "template"), "data")
	if out, err := exec.Command("cp", "-a", p.Dir+"/.", template).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	a := r.open(t)
	for i := 0; i < 20; i++ {
		target := filepath.Join(testenv.PostgresDir(t, dir, fmt.Sprintf("rewind-%02d", i)), "data")
		if out, err := exec.Command("cp", "-a", template+"/.", target).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		// The archived segments the copy still has leave pg_wal: pg_rewind
		// must fetch what it needs through walfetch (the checkpoints have
		// recycled most of them already).
		segs, _ := filepath.Glob(filepath.Join(target, "pg_wal", "0000000*"))
		for _, f := range segs {
			n, err := wal.ParseName(filepath.Base(f))
			if err != nil || n.Kind != wal.Segment {
				continue
			}
			if _, err := a.Store.Stat(context.Background(), a.Layout.WAL(n)); err == nil {
				os.Remove(f)
			}
		}
		testenv.Chown(t, target)
		fetched := filepath.Join(filepath.Dir(target), "fetched")
		os.WriteFile(filepath.Join(target, "postgresql.auto.conf"), []byte(fmt.Sprintf("restore_command = '%s && echo %%f >> %s'\n", r.restoreCommand(bins), fetched)), 0o600)
		testenv.Chown(t, filepath.Join(target, "postgresql.auto.conf"))
		out, err := testenv.AsPostgres(filepath.Join(testenv.PGBin, "pg_rewind"), "--target-pgdata", target,
			"--source-server", s.ConnString(), "--restore-target-wal").CombinedOutput()
		if err != nil {
			t.Fatalf("pg_rewind run %d of 20: %v\n%s", i+1, err, out)
		}
		if _, err := os.Stat(filepath.Join(target, "pg_wal", "walstore")); err == nil {
			t.Fatalf("run %d: walstore's files inside the rewound PGDATA", i+1)
		}
		if b, _ := os.ReadFile(fetched); len(b) == 0 {
			t.Fatalf("run %d: pg_rewind fetched nothing through walfetch:\n%s", i+1, out)
		}
		os.RemoveAll(filepath.Dir(target))
	}
}

// A file store owned by root (directories 0755, files 0644) and a
// read-only bind mount of it are read by walfetch running as postgres.
func TestReadOnlyFileStoreReadAsPostgres(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	r, p := st.r, st.p
	insertBatch(p, 0, 1000)
	id := takeBackup(t, r, p)
	insertBatch(p, 1, 1000)
	archivedTo(t, p)
	seg := p.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
	p.Stop()
	st.ws.Stop(t)
	bins := testenv.Binaries(t)
	filepath.Walk(st.repoDir, func(path string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chown(path, 0, 0)
			if fi.IsDir() {
				os.Chmod(path, 0o755)
			} else {
				os.Chmod(path, 0o644)
			}
		}
		return nil
	})
	ro := filepath.Join(st.dir, "ro")
	os.Mkdir(ro, 0o755)
	if out, err := exec.Command("mount", "--bind", st.repoDir, ro).CombinedOutput(); err != nil {
		t.Fatalf("bind mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", ro).CombinedOutput(); err != nil {
		t.Fatalf("read-only remount: %v %s", err, out)
	}
	for _, where := range []string{st.repoDir, ro} {
		out := filepath.Join(testenv.PostgresDir(t, st.dir, "out-"+filepath.Base(where)), seg)
		cmd := testenv.AsPostgres(bins.WalFetch, "--repo", "file://"+where, "--archive", "main", seg, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("walfetch as postgres from %s: %v\n%s", where, err, b)
		}
		if fi, err := os.Stat(out); err != nil || fi.Size() != 1<<20 {
			t.Fatalf("fetched segment: %v", err)
		}
	}
	// A whole restore from the read-only mount, as postgres, recovers.
	target := filepath.Join(testenv.PostgresDir(t, st.dir, "restored-parent"), "data")
	cmd := testenv.AsPostgres(bins.WalFetch, "restore", "--repo", "file://"+ro, "--archive", "main", "--backup", id, "--pgdata", target)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("walfetch restore as postgres from the read-only mount: %v\n%s", err, b)
	}
	c := testenv.OpenCluster(t, target)
	c.AutoConf("archive_mode = off")
	c.Start()
	c.WaitRecovered(2 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != 2000 {
		t.Fatalf("restored from the read-only store: %d rows, want 2000", got)
	}
}

// retainJSON runs walstored retain --json with args and decodes it.
func retainJSON(t *testing.T, r repo, args ...string) (res struct {
	Kept           []string `json:"kept_backups"`
	DeletedBackups []string `json:"deleted_backups"`
	BackupObjects  int      `json:"backup_objects_deleted"`
	BackupBytes    int64    `json:"backup_bytes_deleted"`
	WALFiles       int      `json:"wal_files_deleted"`
	WALBytes       int64    `json:"wal_bytes_deleted"`
}) {
	t.Helper()
	out := admin(t, r, append([]string{"retain", "--json"}, args...)...)
	if out.Code != 0 {
		t.Fatalf("retain %v: exit %d %s", args, out.Code, out.Stderr)
	}
	if err := json.Unmarshal([]byte(out.Stdout), &res); err != nil {
		t.Fatalf("retain --json: %v %q", err, out.Stdout)
	}
	return res
}

// --keep-within is a recovery window: recovery to any point in it stays
// possible, so the newest backup that ended before the window is kept
// with its WAL. The clock is compressed (seconds stand for the issue's
// days: backups 0, 1 and 2 end before the window, 3 inside it); the
// window's start falls between backups 1 and 2. The dry run reports
// exactly what the real run then deletes.
func TestRecoveryWindowRetention(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	r, p := st.r, st.p
	var ids []string
	var target string
	var atTarget int64
	for i := 0; i < 4; i++ {
		insertBatch(p, i, 1000)
		ids = append(ids, takeBackup(t, r, p))
		archivedTo(t, p)
		if i == 2 {
			time.Sleep(5 * time.Second)
			target, atTarget = now(p), p.QueryInt("SELECT count(*) FROM ledger")
			time.Sleep(3 * time.Second)
		}
		insertBatch(p, i, 500)
	}
	archivedTo(t, p)
	a := r.open(t)
	rec, err := a.LoadBackup(context.Background(), ids[2])
	if err != nil {
		t.Fatal(err)
	}
	// The window starts 1 to 2 s after backup 2 ended (and the runs take a
	// moment), at least 5 s before the target.
	window := time.Since(rec.StopTime.Add(time.Second)).Truncate(time.Second)
	within := fmt.Sprintf("%ds", int(window.Seconds()))

	dry := retainJSON(t, r, "--keep-last", "1", "--keep-within", within, "--dry-run")
	real := retainJSON(t, r, "--keep-last", "1", "--keep-within", within)
	if fmt.Sprint(dry) != fmt.Sprint(real) {
		t.Fatalf("dry run %+v, real run %+v", dry, real)
	}
	if strings.Join(real.Kept, " ") != strings.Join(ids[2:], " ") || strings.Join(real.DeletedBackups, " ") != strings.Join(ids[:2], " ") {
		t.Fatalf("kept %v, deleted %v; want kept %v (backup 2 ended before the window but is needed to recover into it)", real.Kept, real.DeletedBackups, ids[2:])
	}
	if real.WALFiles == 0 || real.BackupObjects == 0 || real.WALBytes == 0 || real.BackupBytes == 0 {
		t.Fatalf("nothing deleted: %+v", real)
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after retention: exit %d\n%s", v.Code, v.Stdout)
	}

	// Recovery to a point early in the window: from backup 2.
	c, out := restoreOut(t, r, st.dir, "early", "--target-time", target)
	if !strings.Contains(out, ids[2]) {
		t.Fatalf("the restore to %s did not pick backup %s:\n%s", target, ids[2], out)
	}
	c.AutoConf("archive_mode = off")
	c.Start()
	c.WaitRecovered(2 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != atTarget {
		t.Fatalf("PITR to %s, early in the window: %d rows, want %d", target, got, atTarget)
	}
}
