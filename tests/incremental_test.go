package tests

// Backups in blocks: every backup stores only the blocks the archive does
// not hold yet, restores on its own, survives the retention of the
// others, and resumes after it was killed.

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
)

// backupJSON takes a backup with --json and returns its record.
func backupJSON(t *testing.T, r repo, c *testenv.Cluster) archive.Record {
	t.Helper()
	return parseRecord(t, admin(t, r, "backup", "--pg", c.ConnString(), "--json"))
}

// hotTable is a table under random updates (pgbench's accounts), next to
// the append-only ledger.
func updateHot(c *testenv.Cluster, fraction float64) {
	c.Exec(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < $1`, fraction)
}

// incrementalScenario: full backup; 2% appended and 1% of the hot table
// updated; a second backup adds a fraction of the first; more writes, a
// third; crash. Each backup restores on its own to every row; a PITR from
// the second stops at its target. Retention of two deletes the first and
// frees the packs only it used (a table dropped since); the other two still restore and verify.
func incrementalScenario(t *testing.T, r repo) {
	dir := testenv.Dir(t)
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	for i := 0; i < 4; i++ {
		insertBatch(c, 0, 100000)
	}
	// A table only the first backup has: dropped before the second, its
	// packs are used by no later backup.
	c.Exec(`CREATE TABLE scratch AS SELECT md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS pad FROM generate_series(1, 400000)`)
	c.Exec("VACUUM (FREEZE, ANALYZE)")
	c.Exec("CHECKPOINT")
	first := backupJSON(t, r, c)
	c.Exec("DROP TABLE scratch")
	if first.Format != archive.FormatBlocks || first.ReusedSize != 0 && first.ReusedSize > first.RawSize/10 {
		t.Fatalf("first backup: format %q, %d of %d raw bytes reused", first.Format, first.ReusedSize, first.RawSize)
	}

	insertBatch(c, 1, 8000)
	updateHot(c, 0.01)
	second := backupJSON(t, r, c)
	t.Logf("first backup: %d raw, %d stored; second: %d raw, %d reused, %d stored (%.1f%% of the first)",
		first.RawSize, first.StoredSize, second.RawSize, second.ReusedSize, second.StoredSize, 100*float64(second.StoredSize)/float64(first.StoredSize))
	if second.StoredSize > first.StoredSize/2 || second.ReusedSize < second.RawSize/2 {
		t.Fatalf("the second backup added %d bytes (the first stored %d) and reused %d of %d raw: not incremental",
			second.StoredSize, first.StoredSize, second.ReusedSize, second.RawSize)
	}
	time.Sleep(1100 * time.Millisecond)
	target := c.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	time.Sleep(1100 * time.Millisecond)
	beforeTarget := c.QueryInt("SELECT count(*) FROM ledger")
	insertBatch(c, 2, 5000)
	updateHot(c, 0.5)
	third := backupJSON(t, r, c)
	insertBatch(c, 3, 1000)
	all := c.QueryInt("SELECT count(*) FROM ledger")
	sum := c.QueryInt("SELECT sum(abalance) FROM pgbench_accounts")
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	c.Kill9()

	check := func(name string, c *testenv.Cluster, rows int64) {
		t.Helper()
		c.AutoConf("archive_mode = off")
		c.Start()
		c.WaitRecovered(3 * time.Minute)
		if got := c.QueryInt("SELECT count(*) FROM ledger"); got != rows {
			t.Fatalf("%s: %d ledger rows, want %d", name, got, rows)
		}
		if rows == all {
			if got := c.QueryInt("SELECT sum(abalance) FROM pgbench_accounts"); got != sum {
				t.Fatalf("%s: hot table sums to %d, want %d", name, got, sum)
			}
		}
		c.Exec("SELECT count(*) FROM pgbench_accounts") // reads every page of the hot table
		c.Stop()
	}
	for i, rec := range []archive.Record{first, second, third} {
		name := []string{"first", "second", "third"}[i]
		check(name, restore(t, r, dir, name, "--backup", rec.ID), all)
	}
	check("pitr", restore(t, r, dir, "pitr", "--backup", second.ID, "--target-time", target), beforeTarget)

	// Packs must be older than archive.PackGrace to be swept.
	time.Sleep(time.Until(first.StopTime.Add(archive.PackGrace + 2*time.Second)))
	res := admin(t, r, "retain", "--keep-last", "2", "--json")
	if res.Code != 0 {
		t.Fatalf("retain: exit %d %s", res.Code, res.Stderr)
	}
	var ret struct {
		Deleted      []string `json:"deleted_backups"`
		PacksDeleted int      `json:"packs_deleted"`
		PackBytes    int64    `json:"pack_bytes_deleted"`
	}
	json.Unmarshal([]byte(res.Stdout), &ret)
	if len(ret.Deleted) != 1 || ret.Deleted[0] != first.ID || ret.PacksDeleted == 0 || ret.PackBytes == 0 {
		t.Fatalf("retain --keep-last 2: %s", res.Stdout)
	}
	t.Logf("retention freed %d packs (%d bytes) that only the first backup used", ret.PacksDeleted, ret.PackBytes)
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after retention: exit %d %s %s", v.Code, v.Stdout, v.Stderr)
	}
	for i, rec := range []archive.Record{second, third} {
		name := []string{"second-after", "third-after"}[i]
		check(name, restore(t, r, dir, name, "--backup", rec.ID), all)
	}
	// A second run frees nothing more: what is left is in use.
	res = admin(t, r, "retain", "--keep-last", "2", "--json")
	json.Unmarshal([]byte(res.Stdout), &ret)
	if res.Code != 0 || ret.PacksDeleted != 0 {
		t.Fatalf("second retain: exit %d %s", res.Code, res.Stdout)
	}
}

func TestIncrementalBackupsThroughWalstored(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	incrementalScenario(t, repo{url: ws.URL})
}

func TestIncrementalBackupsDirectMinIO(t *testing.T) {
	t.Parallel()
	m := testenv.SharedMinIO(t)
	testenv.InitRepo(t, m.URL("incremental"), m.Env())
	incrementalScenario(t, repo{url: m.URL("incremental"), env: m.Env()})
}

// A backup killed halfway resumes with the same command: the second run
// uploads none of the packs the first stored, and the backup restores.
func TestBackupResumesAfterKill(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	px := newProxy(t, ws.URL)
	var packBytes, packPuts atomic.Int64
	var backupProc atomic.Pointer[os.Process]
	px.fail = func(r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/packs/") {
			// Killed as its fourth pack upload begins: half way, at a
			// pack boundary (an upload cut in the middle is lost, up to
			// --jobs packs: the README says so).
			if packPuts.Add(1) == 4 {
				if p := backupProc.Load(); p != nil {
					p.Kill()
				}
				return true
			}
			r.Body = countedBody{r.Body, &packBytes} // what reaches walstored
		}
		return false
	}
	r := repo{url: px.URL}
	c := archivingCluster(t, dir, "primary", repo{url: ws.URL}, 1)
	c.Start()
	c.Exec(ledgerDDL)
	c.Run("pgbench", "-i", "-s", "8", "-q")
	insertBatch(c, 0, 50000)
	rows := c.QueryInt("SELECT count(*) FROM ledger")

	stored := func() int { // packs named by a progress record
		ents, _ := filepath.Glob(filepath.Join(repoDir, "main", "backups", "*", archive.ProgressPrefix+"0*"))
		return len(ents)
	}
	bins := testenv.Binaries(t)
	cmd := exec.Command(bins.WalStored, "backup", "--repo", r.url, "--archive", "main", "--pg", c.ConnString(), "--jobs", "1")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	backupProc.Store(cmd.Process)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the backup was not killed at its fourth pack within 2 minutes")
	}
	if n := stored(); n != 3 {
		t.Fatalf("the killed backup left %d progress records, want 3", n)
	}
	firstRun := packBytes.Swap(0)
	lst := admin(t, repo{url: ws.URL}, "list")
	if !strings.Contains(lst.Stdout, "incomplete") {
		t.Fatalf("the killed backup is not listed as incomplete:\n%s", lst.Stdout)
	}

	rec := backupJSON(t, r, c)
	secondRun := packBytes.Load()
	t.Logf("killed run uploaded %d pack bytes, the resumed run %d (reused %d raw)", firstRun, secondRun, rec.ReusedSize)
	if rec.ReusedSize == 0 || firstRun == 0 {
		t.Fatalf("the resumed backup reused nothing of the %d bytes the killed one uploaded", firstRun)
	}
	// Everything the backup needs, stored once: both runs together upload
	// at most 1.1 times the packs the backup uses.
	fs, err := filestore.Open(repoDir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := archive.New(fs, "main")
	contents, err := a.ReadContents(t.Context(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	for _, p := range contents.Packs {
		info, err := fs.Stat(t.Context(), a.Layout.Pack(p))
		if err != nil {
			t.Fatal(err)
		}
		used += info.Size
	}
	t.Logf("the backup's packs: %d bytes; both runs uploaded %d", used, firstRun+secondRun)
	if float64(firstRun+secondRun) > 1.1*float64(used) {
		t.Fatalf("both runs uploaded %d bytes, the backup's packs are %d", firstRun+secondRun, used)
	}
	archivedTo(t, c)
	c.Stop()
	restored := restore(t, repo{url: ws.URL}, dir, "restored", "--backup", rec.ID)
	restored.AutoConf("archive_mode = off")
	restored.Start()
	restored.WaitRecovered(2 * time.Minute)
	if got := restored.QueryInt("SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("restored %d rows, want %d", got, rows)
	}
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
