package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// walfetch restore --delta over a diverged old primary (issue 16): a
// cluster restored from the backup, promoted and written on (its own
// timeline, never archived), then stopped; the delta restore writes only
// the files that differ, removes what the backup does not have (its
// diverged WAL included), and recovery brings it to the archive's end
// with none of the diverged rows. The directory of a running cluster, of
// another cluster, or no cluster's at all is refused.
func TestDeltaRestoreOfADivergedOldPrimary(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	p.Run("pgbench", "-i", "-s", "4", "-q")
	insertBatch(p, 0, 2000)
	id := takeBackup(t, r, p)
	insertBatch(p, 1, 2000)
	archivedTo(t, p)

	old := restore(t, r, dir, "old", "--backup", id)
	old.AutoConf("archive_mode = off")
	old.Start()
	old.WaitRecovered(2 * time.Minute)
	old.Exec(`INSERT INTO ledger (batch) SELECT 77 FROM generate_series(1, 500)`)
	old.Exec(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 3000`)
	old.Exec("CHECKPOINT")

	bins := testenv.Binaries(t)
	delta := func(pgdata string) testenv.Result {
		return testenv.Run(t, dir, nil, bins.WalFetch, "restore", "--repo", r.url, "--archive", "main", "--backup", id, "--pgdata", pgdata, "--owner", "postgres", "--delta")
	}
	if res := delta(old.Dir); res.Code == 0 || !strings.Contains(res.Stderr, "postmaster.pid") {
		t.Fatalf("--delta over a running cluster: exit %d: %s", res.Code, res.Stderr)
	}
	old.Stop()
	other := testenv.NewCluster(t, dir, "other", testenv.ClusterOptions{})
	if res := delta(other.Dir); res.Code == 0 || !strings.Contains(res.Stderr, "another cluster") {
		t.Fatalf("--delta over another cluster: exit %d: %s", res.Code, res.Stderr)
	}
	empty := testenv.PostgresDir(t, dir, "empty")
	if res := delta(empty); res.Code == 0 || !strings.Contains(res.Stderr, "not a PostgreSQL data directory") {
		t.Fatalf("--delta into an empty directory: exit %d: %s", res.Code, res.Stderr)
	}

	insertBatch(p, 2, 1000)
	want := p.QueryInt("SELECT count(*) FROM ledger")
	archivedTo(t, p)
	res := delta(old.Dir)
	if res.Code != 0 {
		t.Fatalf("walfetch restore --delta: exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	m := regexp.MustCompile(`delta: (\d+) files already as in the backup, (\d+) written \(([^)]*)\), (\d+) removed.*; (\d+) of (\d+) packs read in part`).FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("no delta summary: %s", res.Stdout)
	}
	kept, _ := strconv.Atoi(m[1])
	written, _ := strconv.Atoi(m[2])
	removed, _ := strconv.Atoi(m[4])
	t.Logf("delta restore over the diverged old primary: %s", m[0])
	// Few blocks of each pack differ: each is read in part, only the
	// frames holding them.
	if inPart, packs := m[5], m[6]; inPart != packs || packs == "0" {
		t.Errorf("delta: %s of %s packs read in part, want all", inPart, packs)
	}
	if kept < 5*written || written == 0 || removed == 0 {
		t.Fatalf("delta: %d kept, %d written, %d removed: want most files kept, some written and removed", kept, written, removed)
	}
	if entries, _ := os.ReadDir(filepath.Join(old.Dir, "pg_wal")); len(entries) != 1 || entries[0].Name() != "archive_status" {
		t.Fatalf("pg_wal after the delta restore: %v (the diverged WAL must be gone)", entries)
	}
	// The configuration is the backup's again (the primary's port): the
	// test's own settings for this cluster, as a DBA would keep theirs.
	old.AutoConf(fmt.Sprintf("port = %d", old.Port), fmt.Sprintf("unix_socket_directories = '%s'", filepath.Dir(old.Dir)), "archive_mode = off")
	old.Start()
	old.WaitRecovered(2 * time.Minute)
	if got := old.QueryInt("SELECT count(*) FROM ledger"); got != want {
		t.Fatalf("after the delta restore: %d rows, want %d", got, want)
	}
	if n := old.QueryInt("SELECT count(*) FROM ledger WHERE batch = 77"); n != 0 {
		t.Fatalf("%d diverged rows survived the delta restore", n)
	}
	if got, wantSum := old.QueryInt("SELECT sum(abalance) FROM pgbench_accounts"), p.QueryInt("SELECT sum(abalance) FROM pgbench_accounts"); got != wantSum {
		t.Fatalf("pgbench_accounts after the delta restore: sum %d, the primary's %d", got, wantSum)
	}
}
