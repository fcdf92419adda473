// Package tests holds walstore's end-to-end tests: real PostgreSQL 15
// clusters archiving through the real binaries into walstored, a directory
// or a real MinIO, then crashing, restoring and recovering.
//
// Most of their time is spent waiting on PostgreSQL (start-up,
// checkpoints, recovery), so they run in parallel (t.Parallel; go test
// runs as many at once as there are cores). Each test has its own
// directories, clusters, walstored, ports (testenv.FreePort never hands
// out a port twice in one process) and MinIO prefix. The tests that
// measure load or memory, or drive a browser, run alone (they do not
// call t.Parallel).
package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// repo says how the clients reach a repository in a test: the flags for
// walpush/walfetch and the environment they need.
type repo struct {
	url   string   // --repo
	extra []string // more flags, e.g. --timeout 10s
	env   []string // e.g. AWS credentials
}

// flags is the command-line form, quoted for the shell that runs
// archive_command (S3 URLs hold '&').
func (r repo) flags() string {
	return fmt.Sprintf("--repo \"%s\" --archive main %s", r.url, strings.Join(r.extra, " "))
}

func (r repo) archiveCommand(bins testenv.Bins) string {
	return fmt.Sprintf("%s %s %%p", bins.WalPush, r.flags())
}

func (r repo) restoreCommand(bins testenv.Bins) string {
	return fmt.Sprintf("%s %s %%f %%p", bins.WalFetch, r.flags())
}

// keyArgs are the encryption flags among r.extra.
func (r repo) keyArgs() []string {
	for i, a := range r.extra {
		if a == "--encryption-key-file" && i+1 < len(r.extra) {
			return r.extra[i : i+2]
		}
	}
	return nil
}

// authArgs are the flags among r.extra that say who the client is and
// how it reaches the repository (token, CA, client certificate), which
// every command takes.
func (r repo) authArgs() []string {
	var out []string
	for i, a := range r.extra {
		switch a {
		case "--token-file", "--cacert", "--client-cert", "--client-key":
			if i+1 < len(r.extra) {
				out = append(out, a, r.extra[i+1])
			}
		}
	}
	return out
}

// args is the argv form for a direct call.
func (r repo) args(more ...string) []string {
	return append(append([]string{"--repo", r.url, "--archive", "main"}, r.extra...), more...)
}

// archivingCluster makes a cluster that archives to r.
func archivingCluster(t *testing.T, dir, name string, r repo, segMB int, extra ...string) *testenv.Cluster {
	bins := testenv.Binaries(t)
	conf := append([]string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s'", r.archiveCommand(bins)),
		"checkpoint_timeout = 30min",
		"max_wal_size = 4GB",
	}, extra...)
	c := testenv.NewCluster(t, dir, name, testenv.ClusterOptions{WalSegSizeMB: segMB, Conf: conf})
	c.Env = r.env
	return c
}

// ledger is a table whose rows carry their commit order, so a recovery can
// be checked row by row.
const ledgerDDL = `CREATE TABLE ledger (id bigserial PRIMARY KEY, batch int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)`

// insertBatch commits n ledger rows in one transaction (with some
// incompressible padding so they make real WAL).
func insertBatch(c *testenv.Cluster, batch, n int) {
	c.Exec(`INSERT INTO ledger (batch, pad) SELECT $1, md5(random()::text) || md5(random()::text) FROM generate_series(1, $2)`, batch, n)
}

// fileSHA returns the SHA-256 of a file.
func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// backupDir makes a directory postgres can write a base backup into.
func backupDir(t *testing.T, dir, name string) string {
	return filepath.Join(testenv.PostgresDir(t, dir, name+"-parent"), name)
}

// pitrScenario is the foundation's end-to-end proof, run against each kind
// of repository: a cluster archives ≥ 20 segments of pgbench and ledger
// writes after a base backup; the postmaster is killed with -9 and PGDATA
// wiped; the backup is laid back and recovery through walfetch must replay
// every archived row; a second restore to a recovery_target_time must
// have exactly the rows committed before it.
func pitrScenario(t *testing.T, r repo) {
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	c := archivingCluster(t, dir, "primary", r, 0)
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 1000)
	backup := backupDir(t, dir, "base")
	c.BaseBackup(backup)

	startSeg := c.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Run("pgbench", "-i", "-s", "25", "-q", "--no-vacuum")
	insertBatch(c, 1, 5000)
	time.Sleep(1100 * time.Millisecond)
	target := c.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	time.Sleep(1100 * time.Millisecond)
	insertBatch(c, 2, 5000)
	beforeTarget := c.QueryInt("SELECT count(*) FROM ledger WHERE batch < 2")
	all := c.QueryInt("SELECT count(*) FROM ledger")
	accounts := c.QueryInt("SELECT count(*) FROM pgbench_accounts")
	last := c.SwitchWAL()
	c.WaitArchived(last, 2*time.Minute)
	if n := segmentsBetween(startSeg, last); n < 20 {
		t.Fatalf("workload made only %d segments (%s..%s), want ≥ 20", n, startSeg, last)
	}

	c.Kill9()
	c.Wipe()
	c.RestoreFrom(backup, r.restoreCommand(bins), "recovery_target_action = 'promote'")
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != all {
		t.Fatalf("after full recovery: %d ledger rows, want %d\n%s", got, all, c.Log())
	}
	if got := c.QueryInt("SELECT count(*) FROM pgbench_accounts"); got != accounts {
		t.Fatalf("after full recovery: %d pgbench_accounts rows, want %d", got, accounts)
	}
	if !strings.Contains(c.Log(), "restored log file \""+last+"\" from archive") {
		t.Fatalf("recovery did not restore the last archived segment %s:\n%s", last, c.Log())
	}

	c.Stop()
	c.Wipe()
	c.RestoreFrom(backup, r.restoreCommand(bins),
		fmt.Sprintf("recovery_target_time = '%s'", target),
		"recovery_target_action = 'promote'",
		"recovery_target_timeline = 'current'")
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != beforeTarget {
		t.Fatalf("PITR to %s: %d ledger rows, want exactly the %d committed before it", target, got, beforeTarget)
	}
	if got := c.QueryInt("SELECT count(*) FROM ledger WHERE batch = 2"); got != 0 {
		t.Fatalf("PITR to %s: %d rows of the batch committed after it", target, got)
	}
}

// segmentsBetween counts segments from a to b (names on one timeline, 16
// MiB segments: 256 per log).
func segmentsBetween(a, b string) int {
	var la, sa, lb, sb int
	fmt.Sscanf(a[8:], "%08X%08X", &la, &sa)
	fmt.Sscanf(b[8:], "%08X%08X", &lb, &sb)
	return (lb*256 + sb) - (la*256 + sa) + 1
}

// site is the usual test set-up: a walstored on a directory and a primary
// archiving into it, with the ledger table created.
type site struct {
	dir, repoDir string
	ws           *testenv.Walstored
	r            repo
	p            *testenv.Cluster
}

func newSite(t *testing.T, segMB int, extra ...string) site {
	return newSiteServing(t, segMB, nil, extra...)
}

// newSiteServing is newSite with more walstored serve flags.
func newSiteServing(t *testing.T, segMB int, serveFlags []string, extra ...string) site {
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, append([]string{"--store", "file://" + repoDir}, serveFlags...)...)
	r := repo{url: ws.URL}
	p := archivingCluster(t, dir, "primary", r, segMB, extra...)
	p.Start()
	p.Exec(ledgerDDL)
	return site{dir: dir, repoDir: repoDir, ws: ws, r: r, p: p}
}

// restoredStandby writes 1000 rows on the site's primary, backs it up
// and restores the backup as an archive-fed standby (--wait 2s), not
// started yet.
func (st site) restoredStandby(t *testing.T) *testenv.Cluster {
	insertBatch(st.p, 0, 1000)
	takeBackup(t, st.r, st.p)
	return restore(t, st.r, st.dir, "standby", "--standby", "--wait", "2s")
}
