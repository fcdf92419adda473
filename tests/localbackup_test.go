package tests

// walstored backup --pgdata: the local reader on the database host, with
// tablespaces and page checksums.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/tests/testenv"
)

// checksumCluster is an archiving cluster with data checksums.
func checksumCluster(t *testing.T, dir string, r repo) *testenv.Cluster {
	bins := testenv.Binaries(t)
	c := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1, DataChecksums: true, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s'", r.archiveCommand(bins)),
		"checkpoint_timeout = 30min",
	}})
	c.Env = r.env
	return c
}

// localBackup runs walstored backup --pgdata and returns its result.
func localBackup(t *testing.T, r repo, c *testenv.Cluster, extra ...string) testenv.Result {
	t.Helper()
	return admin(t, r, append([]string{"backup", "--pg", c.ConnString(), "--pgdata", c.Dir, "--json"}, extra...)...)
}

// parseRecord reads the record walstored backup --json printed.
func parseRecord(t *testing.T, res testenv.Result) archive.Record {
	t.Helper()
	if res.Code != 0 {
		t.Fatalf("walstored backup: exit %d: %s", res.Code, res.Stderr)
	}
	var rec archive.Record
	if err := json.Unmarshal([]byte(res.Stdout), &rec); err != nil {
		t.Fatalf("walstored backup --json: %v: %q", err, res.Stdout)
	}
	return rec
}

// A cluster with two user tablespaces: pg_basebackup's stream is refused
// with a pointer to --pgdata; the local reader backs it up (twice, the
// second incremental), and a restore with --tablespace-mapping puts each
// tablespace in its new place, with every row, PITR included.
func TestLocalBackupWithTablespaces(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	c := checksumCluster(t, dir, r)
	c.Start()
	spc := testenv.PostgresDir(t, dir, "spaces")
	for _, n := range []string{"one", "two"} {
		d := filepath.Join(spc, n)
		os.Mkdir(d, 0o700)
		testenv.Chown(t, d)
		c.Exec(fmt.Sprintf("CREATE TABLESPACE %s LOCATION '%s'", n, d))
		c.Exec(fmt.Sprintf("CREATE TABLE t_%s (id int, pad text) TABLESPACE %s", n, n))
		c.Exec(fmt.Sprintf("INSERT INTO t_%s SELECT g, md5(g::text) FROM generate_series(1, 20000) g", n))
	}
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 5000)

	res := admin(t, r, "backup", "--pg", c.ConnString())
	if res.Code == 0 || !strings.Contains(res.Stderr, "tablespaces") || !strings.Contains(res.Stderr, "--pgdata") {
		t.Fatalf("pg_basebackup mode with tablespaces: exit %d %q", res.Code, res.Stderr)
	}
	first := parseRecord(t, localBackup(t, r, c))
	if !first.ReadLocally || !strings.Contains(first.TablespaceMap, filepath.Join(spc, "one")) || !first.Manifest {
		t.Fatalf("first local backup: read_locally %v, tablespace_map %q, backup_manifest %v", first.ReadLocally, first.TablespaceMap, first.Manifest)
	}
	c.Exec("INSERT INTO t_one SELECT g, 'after' FROM generate_series(1, 1000) g")
	insertBatch(c, 1, 1000)
	second := parseRecord(t, localBackup(t, r, c, "--readers", "2"))
	if second.ReusedSize < second.RawSize/2 {
		t.Fatalf("second local backup reused %d of %d raw bytes", second.ReusedSize, second.RawSize)
	}
	time.Sleep(1100 * time.Millisecond)
	target := c.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	time.Sleep(1100 * time.Millisecond)
	c.Exec("INSERT INTO t_two SELECT g, 'late' FROM generate_series(1, 500) g")
	ones, twos := c.QueryInt("SELECT count(*) FROM t_one"), c.QueryInt("SELECT count(*) FROM t_two")
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	// A restore drill puts the tablespaces in its scratch directory, never
	// over the running cluster's.
	if code, d, stderr := drill(t, r); code != 0 || !d.OK {
		t.Fatalf("drill of a backup with tablespaces: exit %d %+v\n%s", code, d, stderr)
	}
	c.Exec("SELECT count(*) FROM t_one") // the cluster's tablespaces untouched
	// Verify and retention check a local backup against its label and
	// the .backup file PostgreSQL archived for it.
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify with local backups: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	if res := admin(t, r, "retain", "--keep-last", "2", "--dry-run"); res.Code != 0 {
		t.Fatalf("retain over local backups: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	c.Kill9()

	// The tablespaces' old places are still in use: a restore there is
	// refused, a mapping that names no tablespace too.
	bins := testenv.Binaries(t)
	try := func(extra ...string) testenv.Result {
		args := append([]string{"restore", "--repo", r.url, "--archive", "main", "--pgdata", filepath.Join(dir, "nowhere"), "--owner", "postgres"}, extra...)
		return testenv.Run(t, dir, nil, bins.WalFetch, args...)
	}
	if res := try(); res.Code == 0 || !strings.Contains(res.Stderr, "is not empty") || !strings.Contains(res.Stderr, "--tablespace-mapping") {
		t.Fatalf("restore over the live tablespaces: exit %d %q", res.Code, res.Stderr)
	}
	if res := try("--tablespace-mapping", "/no/such=/tmp/x"); res.Code == 0 || !strings.Contains(res.Stderr, "no tablespace there") {
		t.Fatalf("mapping a tablespace the backup lacks: exit %d %q", res.Code, res.Stderr)
	}

	restoreMapped := func(name string, extra ...string) (*testenv.Cluster, string, string) {
		newOne, newTwo := filepath.Join(spc, name+"-one"), filepath.Join(spc, name+"-two")
		args := append([]string{"--tablespace-mapping", filepath.Join(spc, "one") + "=" + newOne,
			"--tablespace-mapping", filepath.Join(spc, "two") + "=" + newTwo}, extra...)
		return restore(t, r, dir, name, args...), newOne, newTwo
	}
	var pitr *testenv.Cluster
	var pitrOne, pitrTwo string
	for _, tc := range []struct {
		name       string
		args       []string
		ones, twos int64
	}{
		{"first", []string{"--backup", first.ID}, ones, twos},
		{"pitr", []string{"--backup", second.ID, "--target-time", target}, ones, twos - 500},
	} {
		rc, newOne, newTwo := restoreMapped(tc.name, tc.args...)
		pitr, pitrOne, pitrTwo = rc, newOne, newTwo
		links, _ := filepath.Glob(filepath.Join(rc.Dir, "pg_tblspc", "*"))
		found := false
		for _, l := range links {
			if to, _ := os.Readlink(l); to == newOne {
				found = true
			}
		}
		if len(links) != 2 || !found {
			t.Fatalf("%s: pg_tblspc links %v do not point to the mapped places", tc.name, links)
		}
		// PostgreSQL's own tool checks the restored copy, tablespaces
		// included, against the backup_manifest the local reader wrote
		// (its WAL comes from the archive: -n).
		if out, err := verifyBackup(rc.Dir); err != nil {
			t.Fatalf("%s: pg_verifybackup of the restored copy: %v\n%s", tc.name, err, out)
		}
		if tc.name == "first" {
			// A real check: a file changed after the restore fails it.
			pv := filepath.Join(rc.Dir, "PG_VERSION")
			orig, _ := os.ReadFile(pv)
			os.WriteFile(pv, []byte("14\n"), 0o600)
			out, err := verifyBackup(rc.Dir)
			os.WriteFile(pv, orig, 0o600)
			if err == nil || !strings.Contains(out, "PG_VERSION") {
				t.Fatalf("pg_verifybackup passed a restored copy with a changed PG_VERSION: %v\n%s", err, out)
			}
		}
		rc.AutoConf("archive_mode = off")
		rc.Start()
		rc.WaitRecovered(3 * time.Minute)
		if got := rc.QueryInt("SELECT count(*) FROM t_one"); got != tc.ones {
			t.Fatalf("%s: t_one has %d rows, want %d", tc.name, got, tc.ones)
		}
		if got := rc.QueryInt("SELECT count(*) FROM t_two"); got != tc.twos {
			t.Fatalf("%s: t_two has %d rows, want %d", tc.name, got, tc.twos)
		}
		if loc := rc.QueryString("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'one'"); loc != newOne {
			t.Fatalf("%s: tablespace one is at %q, want %q", tc.name, loc, newOne)
		}
		rc.Stop()
	}

	// The PITR copy, promoted at its target, diverges in both
	// tablespaces; a delta restore of the second backup over it compares
	// its tablespaces in place too: the diverged rows are gone, every
	// archived row is back.
	pitr.Start()
	for _, tbl := range []string{"t_one", "t_two"} {
		pitr.Exec("INSERT INTO " + tbl + " SELECT g, 'diverged' FROM generate_series(1, 300) g")
	}
	pitr.Exec("CHECKPOINT")
	pitr.Stop()
	delta := func(one, two string) testenv.Result {
		return testenv.Run(t, dir, nil, bins.WalFetch, "restore", "--repo", r.url, "--archive", "main", "--backup", second.ID,
			"--pgdata", pitr.Dir, "--owner", "postgres", "--delta",
			"--tablespace-mapping", filepath.Join(spc, "one")+"="+one, "--tablespace-mapping", filepath.Join(spc, "two")+"="+two)
	}
	// A place that holds something else than this cluster's tablespace
	// is never written over.
	elsewhere := filepath.Join(spc, "elsewhere")
	os.MkdirAll(elsewhere, 0o700)
	os.WriteFile(filepath.Join(elsewhere, "someone-elses"), []byte("x"), 0o600)
	if res := delta(elsewhere, pitrTwo); res.Code == 0 || !strings.Contains(res.Stderr, "not this cluster's") {
		t.Fatalf("--delta with a tablespace mapped over another directory: exit %d %q", res.Code, res.Stderr)
	}
	if b, err := os.ReadFile(filepath.Join(elsewhere, "someone-elses")); err != nil || string(b) != "x" {
		t.Fatalf("the refused delta restore touched %s: %q %v", elsewhere, b, err)
	}
	res = delta(pitrOne, pitrTwo)
	if res.Code != 0 || !strings.Contains(res.Stdout, "delta: ") {
		t.Fatalf("--delta over the diverged copy with tablespaces: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	t.Logf("delta restore with tablespaces: %s", regexp.MustCompile(`delta: [^\n]*`).FindString(res.Stdout))
	// The copy that was restored, promoted and diverged is, after the
	// delta restore, the second backup exactly, as pg_verifybackup sees it.
	if out, err := verifyBackup(pitr.Dir); err != nil {
		t.Fatalf("pg_verifybackup after the delta restore over the diverged copy: %v\n%s", err, out)
	}
	pitr.AutoConf(fmt.Sprintf("port = %d", pitr.Port), fmt.Sprintf("unix_socket_directories = '%s'", filepath.Dir(pitr.Dir)), "archive_mode = off")
	pitr.Start()
	pitr.WaitRecovered(3 * time.Minute)
	if got := pitr.QueryInt("SELECT count(*) FROM t_one"); got != ones {
		t.Fatalf("after the delta restore: t_one has %d rows, want %d", got, ones)
	}
	if got := pitr.QueryInt("SELECT count(*) FROM t_two"); got != twos {
		t.Fatalf("after the delta restore: t_two has %d rows, want %d", got, twos)
	}
	if n := pitr.QueryInt("SELECT (SELECT count(*) FROM t_one WHERE pad = 'diverged') + (SELECT count(*) FROM t_two WHERE pad = 'diverged')"); n != 0 {
		t.Fatalf("%d diverged rows survived the delta restore", n)
	}
	pitr.Stop()
}

// A page whose checksum fails: the local backup names the file and block
// and fails; --accept-bad-checksums stores it and lists the page.
func TestLocalBackupReportsBadChecksums(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	c := checksumCluster(t, dir, r)
	c.Start()
	c.Exec("CREATE TABLE victim (id int, pad text)")
	c.Exec("INSERT INTO victim SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
	c.Exec("CHECKPOINT")
	rel := c.QueryString("SELECT pg_relation_filepath('victim')")
	clean := parseRecord(t, localBackup(t, r, c))
	if len(clean.BadPages) != 0 {
		t.Fatalf("a healthy cluster has bad pages: %v", clean.BadPages)
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, rel), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("damaged by the test"), 2*8192+4000) // block 2, past its header
	f.Close()

	res := localBackup(t, r, c)
	want := rel + " block 2"
	if res.Code == 0 || !strings.Contains(res.Stderr, want) || !strings.Contains(res.Stderr, "checksum") {
		t.Fatalf("backup over a damaged page: exit %d %q (want it to name %s)", res.Code, res.Stderr, want)
	}
	rec := parseRecord(t, localBackup(t, r, c, "--accept-bad-checksums"))
	if len(rec.BadPages) != 1 || rec.BadPages[0] != want {
		t.Fatalf("accepted backup lists bad pages %v, want [%s]", rec.BadPages, want)
	}
	if res := admin(t, r, "backup", "--pg", c.ConnString(), "--accept-bad-checksums"); res.Code != 2 {
		t.Fatalf("--accept-bad-checksums without --pgdata: exit %d %q", res.Code, res.Stderr)
	}
}

// verifyBackup runs pg_verifybackup over a restored data directory,
// without parsing WAL (a restore fetches it from the archive).
func verifyBackup(pgdata string) (string, error) {
	out, err := testenv.AsPostgres(filepath.Join(testenv.PGBin, "pg_verifybackup"), "-n", pgdata).CombinedOutput()
	return string(out), err
}

// An incremental backup read locally does not read what cannot have
// changed: files the newest backup holds with the same size, times and
// inode, not modified in the minute before it began, are taken from it
// unread; --full-read reads them. A restore of such a backup holds every
// row, and pg_verifybackup finds every file (the unread ones included)
// as its backup_manifest says.
func TestIncrementalSkipsUnchangedFiles(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	c := checksumCluster(t, dir, r)
	c.Start()
	c.Exec("CREATE TABLE cold (id int, pad text)")
	c.Exec("INSERT INTO cold SELECT g, md5(g::text) FROM generate_series(1, 50000) g")
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 1000)
	c.Exec("CHECKPOINT")
	// Nothing is taken unread that changed less than a minute before the
	// backup it would come from.
	time.Sleep(65 * time.Second)
	first := localBackup(t, r, c)
	parseRecord(t, first)
	if strings.Contains(first.Stdout+first.Stderr, "unread") {
		t.Fatalf("the first backup took files unread:\n%s", first.Stderr)
	}
	insertBatch(c, 1, 1000)
	c.Exec("CHECKPOINT")
	second := localBackup(t, r, c)
	rec := parseRecord(t, second)
	m := regexp.MustCompile(`(\d+) files unchanged since backup \S+ were taken from it unread`).FindStringSubmatch(second.Stdout + second.Stderr)
	if m == nil || num(t, m[1]) < 100 || num(t, m[1]) >= rec.Files {
		t.Fatalf("second backup: %d files, unread: %v\n%s", rec.Files, m, second.Stderr)
	}
	full := localBackup(t, r, c, "--full-read")
	parseRecord(t, full)
	if strings.Contains(full.Stdout+full.Stderr, "unread") {
		t.Fatalf("--full-read took files unread:\n%s", full.Stderr)
	}
	// Entries are taken unread only under this host's seal: with the key
	// gone (as for entries a stolen backup token forged elsewhere) every
	// file is read, and the next backup skips again under the new key.
	key := filepath.Join(filepath.Dir(c.Dir), "."+filepath.Base(c.Dir)+".walstore", "backup-seal.key")
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid == 0 {
		t.Fatalf("seal key %s: %v %v, want mode 0600 owned by the cluster's owner", key, fi, err)
	}
	os.Remove(key)
	if rekeyed := localBackup(t, r, c); parseRecord(t, rekeyed).ID == "" || strings.Contains(rekeyed.Stdout+rekeyed.Stderr, "unread") {
		t.Fatalf("a backup with a new seal key took files unread from entries sealed with the old one:\n%s", rekeyed.Stderr)
	}
	if again := localBackup(t, r, c); parseRecord(t, again).ID == "" || !strings.Contains(again.Stdout+again.Stderr, "unread") {
		t.Fatalf("the backup after it took nothing unread:\n%s", again.Stderr)
	}
	os.Chmod(key, 0o644)
	mustFail(t, "a seal key readable by others", localBackup(t, r, c), 2, "readable by others")
	os.Chmod(key, 0o600)
	rows := c.QueryInt("SELECT count(*) FROM ledger")
	cold := c.QueryString("SELECT md5(string_agg(pad, ',' ORDER BY id)) FROM cold")
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	c.Stop()

	restored := restore(t, r, dir, "from-second", "--backup", rec.ID)
	if out, err := verifyBackup(restored.Dir); err != nil {
		t.Fatalf("pg_verifybackup of a backup with unread files: %v\n%s", err, out)
	}
	restored.AutoConf("archive_mode = off")
	restored.Start()
	restored.WaitRecovered(2 * time.Minute)
	if got := restored.QueryInt("SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("restored: %d ledger rows, want %d", got, rows)
	}
	if got := restored.QueryString("SELECT md5(string_agg(pad, ',' ORDER BY id)) FROM cold"); got != cold {
		t.Fatal("restored: the cold table differs")
	}
}
