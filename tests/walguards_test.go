package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

// The guards hold what PostgreSQL writes, and only that: history files
// and segments as PostgreSQL's own reader takes them.

// TestSecondRestoreBeforeAFork is the lab write-up's sequence, on a file
// store and on MinIO: a backup, a crash, a restore to the end (timeline 2
// forks from 1), then a second restore of the same backup to a time
// before that fork. PostgreSQL picks timeline 3 and writes a history
// whose last switch point lies below the one before it; walpush used to
// refuse it, and archiving stopped for good. Now the history and the WAL
// after it are archived, a third restore follows timeline 3, and verify
// is green.
func TestSecondRestoreBeforeAFork(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"file", "minio"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := testenv.Dir(t)
			var ws *testenv.Walstored
			if kind == "file" {
				ws = testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
			} else {
				m := testenv.StartMinIO(t)
				ws = testenv.StartWalstored(t, m.Env(), "--store", m.URL("walguards"))
			}
			secondRestoreBeforeAFork(t, dir, repo{url: ws.URL})
		})
	}
}

func secondRestoreBeforeAFork(t *testing.T, dir string, r repo) {
	p := archivingCluster(t, dir, "primary", r, 0)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	insertBatch(p, 1, 1000)
	p.WaitArchived(p.SwitchWAL(), time.Minute)
	time.Sleep(1100 * time.Millisecond)
	target := p.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	time.Sleep(1100 * time.Millisecond)
	insertBatch(p, 2, 1000)
	p.WaitArchived(p.SwitchWAL(), time.Minute)
	insertBatch(p, 3, 1000)
	p.WaitArchived(p.SwitchWAL(), time.Minute)
	beforeTarget := p.QueryInt("SELECT count(*) FROM ledger WHERE batch < 2")
	p.Kill9()

	// First restore: to the end, timeline 2.
	c2 := restore(t, r, dir, "to-the-end")
	c2.Start()
	c2.WaitRecovered(3 * time.Minute)
	if tl := c2.Timeline(); tl != 2 {
		t.Fatalf("first restore is on timeline %d, want 2", tl)
	}
	insertBatch(c2, 4, 500)
	c2.WaitArchived(c2.SwitchWAL(), time.Minute)
	c2.Stop()

	// Second restore of the same backup, to a time before timeline 2
	// forked, following the latest timeline as PostgreSQL does by default.
	c3 := restore(t, r, dir, "before-the-fork", "--target-time", target, "--target-timeline", "latest")
	c3.Start()
	c3.WaitRecovered(3 * time.Minute)
	if tl := c3.Timeline(); tl != 3 {
		t.Fatalf("second restore is on timeline %d, want 3", tl)
	}
	if got := c3.QueryInt("SELECT count(*) FROM ledger"); got != beforeTarget {
		t.Fatalf("second restore: %d rows, want the %d committed before %s", got, beforeTarget, target)
	}
	hist, err := os.ReadFile(filepath.Join(c3.Dir, "pg_wal", "00000003.history"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := wal.ParseHistory(3, hist)
	if err != nil || len(h) != 2 || h[1].SwitchPoint >= h[0].SwitchPoint {
		t.Fatalf("PostgreSQL wrote %q (%v): the test wants a switch point below the one before it", hist, err)
	}
	insertBatch(c3, 5, 500)
	afterFork := c3.QueryInt("SELECT count(*) FROM ledger")
	c3.WaitArchived(c3.SwitchWAL(), time.Minute)
	if failed := c3.QueryInt("SELECT failed_count FROM pg_stat_archiver"); failed != 0 {
		t.Fatalf("archiving failed %d times on timeline 3:\n%s", failed, c3.Log())
	}
	c3.Stop()

	// A third restore, of timeline 3 (the newest), holds what 3 wrote.
	c4 := restore(t, r, dir, "third")
	c4.Start()
	c4.WaitRecovered(3 * time.Minute)
	if got := c4.QueryInt("SELECT count(*) FROM ledger"); got != afterFork || c4.Timeline() != 4 {
		t.Fatalf("third restore: %d rows on timeline %d, want %d on 4", got, c4.Timeline(), afterFork)
	}
	c4.Stop()
	if res := admin(t, r, "verify"); res.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestUnfinishedSegmentsAreRefused: the segment PostgreSQL is writing,
// pushed by hand, is refused by walpush (not .ready); with --force,
// walstored's door refuses it (its WAL stops before its end), and a
// recycled file too. Junk and a 128 MiB body under segment names get a
// 4xx from a hostile client, and nothing is stored.
// PostgreSQL then archives the finished segment.
func TestUnfinishedSegmentsAreRefused(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	st := newSite(t, 0)
	insertBatch(st.p, 0, 2000)
	cur := st.p.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn())")
	path := filepath.Join(st.p.Dir, "pg_wal", cur)
	res := testenv.Run(t, st.dir, nil, bins.WalPush, st.r.args("--jobs", "1", path)...)
	if res.Code != 1 || !strings.Contains(res.Stderr, ".ready") || !strings.Contains(res.Stderr, "--force") {
		t.Fatalf("push of the current segment: exit %d %q, want 1 naming .ready and --force", res.Code, res.Stderr)
	}
	res = testenv.Run(t, st.dir, nil, bins.WalPush, st.r.args("--jobs", "1", "--force", path)...)
	if res.Code != 1 || !strings.Contains(res.Stderr, "WAL ends at") || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
		t.Fatalf("forced push of the current segment: exit %d %q, want 1: WAL ends before the end", res.Code, res.Stderr)
	}
	stored := filepath.Join(st.repoDir, "main", "wal", cur)
	if _, err := os.Stat(stored); !os.IsNotExist(err) {
		t.Fatalf("the unfinished segment was stored: %v", err)
	}
	unfinished, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A recycled file: an old finished segment copied under the next name.
	old := st.p.QueryString("SELECT pg_walfile_name('0/1000000')")
	oldBytes, err := os.ReadFile(filepath.Join(st.p.Dir, "pg_wal", old))
	if err == nil {
		n, _ := wal.ParseName(cur)
		copy(oldBytes, waltest.Header(mustSysID(t, st.p), n, int64(len(oldBytes))))
		recycled := filepath.Join(testenv.Dir(t), cur)
		os.WriteFile(recycled, oldBytes, 0o644)
		res = testenv.Run(t, st.dir, nil, bins.WalPush, st.r.args("--jobs", "1", recycled)...)
		if res.Code != 1 || !strings.Contains(res.Stderr, "invalid") {
			t.Fatalf("push of a recycled file: exit %d %q, want refused", res.Code, res.Stderr)
		}
	}

	// A hostile client: junk, and a 128 MiB body.
	sysid := mustSysID(t, st.p)
	next, _ := wal.ParseName(cur)
	for i, body := range [][]byte{bytes.Repeat([]byte("junk"), 4<<20), nil} {
		n := next.Next(16 << 20).Next(16 << 20)
		size := int64(16 << 20)
		if body == nil {
			n = n.Next(16 << 20)
			size = 128 << 20
			body = make([]byte, size)
		}
		copy(body, waltest.Header(sysid, n, size))
		enc := envelope.NewEncoder()
		enc.SystemID = sysid
		obj, err := enc.EncodeBytes(body, archive.Layout{Archive: "main"}.WAL(n))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/archives/main/objects/wal/%s", st.ws.URL, n), bytes.NewReader(obj.Bytes()))
		req.ContentLength = obj.Size()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("body %d under %s: status %d, want 4xx", i, n, resp.StatusCode)
		}
		if _, err := os.Stat(filepath.Join(st.repoDir, "main", "wal", n.String())); !os.IsNotExist(err) {
			t.Fatalf("body %d was stored under %s", i, n)
		}
	}

	// PostgreSQL finishes the segment and archives it: nothing was in the way.
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	if got := st.p.QueryInt("SELECT failed_count FROM pg_stat_archiver"); got != 0 {
		t.Fatalf("archiving failed %d times", got)
	}

	// A copy made to get a table back (--archive-mode off) promotes and
	// archives nothing into the live archive.
	takeBackup(t, st.r, st.p)
	c, out := restoreOut(t, st.r, st.dir, "get-a-table-back", "--archive-mode", "off")
	if strings.Contains(out, "keeps the backup's archiving settings") {
		t.Fatalf("--archive-mode off still warns: %s", out)
	}
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if mode := c.QueryString("SHOW archive_mode"); mode != "off" || c.Timeline() != 2 {
		t.Fatalf("restored copy: archive_mode %s on timeline %d, want off on 2", mode, c.Timeline())
	}
	c.SwitchWAL()
	time.Sleep(2 * time.Second)
	if _, err := os.Stat(filepath.Join(st.repoDir, "main", "wal", "00000002.history")); !os.IsNotExist(err) {
		t.Fatalf("the copy archived its timeline into the live archive: %v", err)
	}
	c.Stop()
	_, out = restoreOut(t, st.r, st.dir, "kept")
	if !strings.Contains(out, "--archive-mode off") {
		t.Fatalf("a restore that keeps archiving does not say how not to: %s", out)
	}

	// An unfinished segment planted in the store by hand, behind the
	// door's back: verify reads it as recovery would, and names it.
	if res := admin(t, st.r, "verify"); res.Code != 0 {
		t.Fatalf("verify before the plant: exit %d %s%s", res.Code, res.Stdout, res.Stderr)
	}
	cn, _ := wal.ParseName(cur)
	planted := cn.Next(16 << 20).Next(16 << 20).Next(16 << 20).Next(16 << 20)
	copy(unfinished, waltest.Header(sysid, planted, int64(len(unfinished))))
	enc := envelope.NewEncoder()
	enc.SystemID = sysid
	obj, err := enc.EncodeBytes(unfinished, archive.Layout{Archive: "main"}.WAL(planted))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.repoDir, "main", "wal", planted.String()), obj.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	res = admin(t, st.r, "verify")
	if res.Code == 0 || !strings.Contains(res.Stdout+res.Stderr, planted.String()+": ") || !strings.Contains(res.Stdout+res.Stderr, "could not replay") {
		t.Fatalf("verify of an archive holding an unfinished segment: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

func mustSysID(t *testing.T, c *testenv.Cluster) uint64 {
	var id uint64
	if _, err := fmt.Sscan(c.SystemID(), &id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPlantedBackupLabelNeverStallsArchiving: a push client pre-stores a
// .backup file under the next backup's predictable name. The real one
// then meets a conflict: it is kept beside the planted one, walpush exits
// 0 with a warning (archiving goes on), the backup completes and trusts
// its own label, and verify is green.
func TestPlantedBackupLabelNeverStallsArchiving(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	st := newSite(t, 0)
	insertBatch(st.p, 0, 1000)
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	cur, _ := wal.ParseName(st.p.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn())"))
	next := cur.Next(16 << 20)
	start := next.StartLSN(16<<20) + 0x28
	planted := fmt.Sprintf("%s.%08X.backup", next, uint32(start)%(16<<20))
	label := fmt.Sprintf("START WAL LOCATION: %s (file %s)\nSTOP WAL LOCATION: %s (file %s)\nCHECKPOINT LOCATION: %s\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-07 10:00:00 UTC\nLABEL: planted\nSTART TIMELINE: 1\nSTOP TIME: 2026-12-07 10:00:01 UTC\nSTOP TIMELINE: 1\n",
		start, next, start+0x100, next, start+0x60)
	p := filepath.Join(testenv.Dir(t), planted)
	os.WriteFile(p, []byte(label), 0o644)
	if res := testenv.Run(t, st.dir, nil, bins.WalPush, st.r.args("--jobs", "1", p)...); res.Code != 0 {
		t.Fatalf("planting %s: exit %d %s", planted, res.Code, res.Stderr)
	}
	takeBackup(t, st.r, st.p)
	copies, _ := filepath.Glob(filepath.Join(st.repoDir, "main", "meta", "labels", planted+".*"))
	if len(copies) != 1 {
		all, _ := filepath.Glob(filepath.Join(st.repoDir, "main", "wal", "*.backup"))
		t.Fatalf("the real %s was not kept beside the planted one (copies %v; labels %v)", planted, copies, all)
	}
	if failed := st.p.QueryInt("SELECT failed_count FROM pg_stat_archiver"); failed != 0 {
		t.Fatalf("archiving failed %d times", failed)
	}
	// By hand: one more label under that name is kept too, exit 0, one
	// warning line.
	os.WriteFile(p, []byte(strings.Replace(label, "LABEL: planted", "LABEL: third", 1)), 0o644)
	res := testenv.Run(t, st.dir, nil, bins.WalPush, st.r.args("--jobs", "1", p)...)
	if res.Code != 0 || !strings.Contains(res.Stderr, "WARNING another label is stored under this name") || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
		t.Fatalf("a third label under %s: exit %d %q", planted, res.Code, res.Stderr)
	}
	insertBatch(st.p, 1, 100)
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	if res := admin(t, st.r, "verify"); res.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if m := metricsText(t, st.ws.URL, ""); !strings.Contains(m, `walstore_backup_label_conflicts_total{archive="main"} 2`) {
		t.Fatalf("metric: %s", m)
	}
	// A segment conflict still fails: that is the split-brain fence.
	c := restore(t, st.r, st.dir, "restored")
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != 1100 {
		t.Fatalf("restore of the backup: %d rows, want 1100", got)
	}
	c.Stop()
}

// TestRetiredTimelineNumberIsNeverReused: a restore opened read-write by
// mistake makes timeline 2 while the primary goes on with 1; timeline 2 is
// retired. A later restore that promotes takes timeline 3, not 2 again
// (two timelines 2 would share segment names), archives it, and verify
// is green.
func TestRetiredTimelineNumberIsNeverReused(t *testing.T) {
	t.Parallel()
	st := newSite(t, 0)
	insertBatch(st.p, 0, 1000)
	takeBackup(t, st.r, st.p)
	mistake := restore(t, st.r, st.dir, "mistake")
	mistake.Start()
	mistake.WaitRecovered(3 * time.Minute)
	insertBatch(mistake, 9, 10)
	mistake.WaitArchived(mistake.SwitchWAL(), time.Minute)
	mistake.Stop()
	insertBatch(st.p, 1, 1000)
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	if res := admin(t, st.r, "timeline", "retire", "--timeline", "2", "--reason", "test: opened by mistake"); res.Code != 0 {
		t.Fatalf("retire: exit %d %s%s", res.Code, res.Stdout, res.Stderr)
	}
	c := restore(t, st.r, st.dir, "again")
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if tl := c.Timeline(); tl != 3 {
		t.Fatalf("the promotion after retiring timeline 2 took timeline %d, want 3\n%s", tl, c.Log())
	}
	insertBatch(c, 2, 10)
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	if failed := c.QueryInt("SELECT failed_count FROM pg_stat_archiver"); failed != 0 {
		t.Fatalf("archiving failed %d times on timeline 3:\n%s", failed, c.Log())
	}
	c.Stop()
	st.p.Stop()
	if res := admin(t, st.r, "verify"); res.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	list := admin(t, st.r, "list")
	if !strings.Contains(list.Stdout, "timeline 3 (from timeline 1") {
		t.Fatalf("list: %s", list.Stdout)
	}
}

// TestQuarantineLetsTheGoodCopyIn: an unfinished copy of the segment
// PostgreSQL is writing is planted in the store by hand (behind the
// door's back, as a store written before the door checked WAL holds
// them). PostgreSQL's archiving then meets a conflict; verify exits
// non-zero naming it; archives (and the metrics) say broken. After
// walstored quarantine, PostgreSQL archives the good copy, verify is
// green reading only what is new, list shows what was set aside, and
// unquarantine refuses to replace the good copy.
func TestQuarantineLetsTheGoodCopyIn(t *testing.T) {
	t.Parallel()
	st := newSite(t, 0)
	insertBatch(st.p, 0, 1000)
	takeBackup(t, st.r, st.p)
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	insertBatch(st.p, 1, 1000)
	cur := st.p.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn())")
	b, err := os.ReadFile(filepath.Join(st.p.Dir, "pg_wal", cur))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := wal.ParseName(cur)
	enc := envelope.NewEncoder()
	enc.SystemID = mustSysID(t, st.p)
	obj, err := enc.EncodeBytes(b, archive.Layout{Archive: "main"}.WAL(n))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.repoDir, "main", "wal", cur), obj.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	st.p.SwitchWAL()
	testenv.WaitFor(t, time.Minute, "PostgreSQL's archiver to meet the planted copy", func() bool {
		return st.p.QueryInt("SELECT failed_count FROM pg_stat_archiver") > 0
	})
	v := admin(t, st.r, "verify")
	if v.Code != 1 || !strings.Contains(v.Stdout+v.Stderr, cur) || !strings.Contains(v.Stdout+v.Stderr, "could not replay") {
		t.Fatalf("verify with the planted copy: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	arch := admin(t, st.r, "archives", "--json")
	if arch.Code != 1 || !strings.Contains(arch.Stdout, `"state": "broken"`) || !strings.Contains(arch.Stdout, cur) {
		t.Fatalf("archives with a broken segment: exit %d\n%s%s", arch.Code, arch.Stdout, arch.Stderr)
	}
	testenv.WaitFor(t, time.Minute, "the broken segment in walstored's metrics", func() bool {
		return strings.Contains(metricsText(t, st.ws.URL, ""), `walstore_archive_broken_objects{archive="main"} 1`)
	})

	q := admin(t, st.r, "quarantine", cur, "--reason", "test: planted unfinished copy")
	if q.Code != 0 || !strings.Contains(q.Stdout, "set aside") {
		t.Fatalf("quarantine: exit %d %s%s", q.Code, q.Stdout, q.Stderr)
	}
	insertBatch(st.p, 2, 10)
	last := st.p.SwitchWAL() // wakes the archiver, which retries the segment
	st.p.WaitArchived(last, 2*time.Minute)
	good := filepath.Join(testenv.Dir(t), "good")
	if res := testenv.Run(t, st.dir, nil, testenv.Binaries(t).WalFetch, st.r.args(cur, good)...); res.Code != 0 {
		t.Fatalf("fetch of the good copy: exit %d %s", res.Code, res.Stderr)
	}
	if _, err := wal.CheckSegmentBytes(n, mustRead(t, good), 0); err != nil {
		t.Fatalf("the copy now stored is not whole: %v", err)
	}
	v = admin(t, st.r, "verify")
	if v.Code != 0 || !strings.Contains(v.Stdout, "not read again") || !strings.Contains(v.Stdout, "quarantine") {
		t.Fatalf("verify after the quarantine: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	if full := admin(t, st.r, "verify", "--full"); full.Code != 0 || strings.Contains(full.Stdout, "not read again") {
		t.Fatalf("verify --full: exit %d\n%s%s", full.Code, full.Stdout, full.Stderr)
	}
	if arch := admin(t, st.r, "archives", "--json"); arch.Code != 0 || strings.Contains(arch.Stdout, `"state": "broken"`) {
		t.Fatalf("archives after the quarantine: exit %d\n%s", arch.Code, arch.Stdout)
	}
	if l := admin(t, st.r, "list"); !strings.Contains(l.Stdout, "quarantined") || !strings.Contains(l.Stdout, cur) || !strings.Contains(l.Stdout, "planted unfinished copy") {
		t.Fatalf("list does not show the quarantined copy:\n%s", l.Stdout)
	}
	// Back under its name? The door refuses it (its WAL stops early), as it
	// would refuse to replace the good copy.
	if u := admin(t, st.r, "unquarantine", cur); u.Code == 0 || !strings.Contains(u.Stderr, "WAL ends at") {
		t.Fatalf("unquarantine over the good copy: exit %d %s%s", u.Code, u.Stdout, u.Stderr)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
