package bench

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/internal/testenv"
)

// BenchmarkBackup prints backup and restore throughput on a database of
// at least 1 GiB (pgbench scale 70), through walstored on a local
// directory, against pg_basebackup into a local tar and cp -a of it.
func BenchmarkBackup(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	bins := testenv.Binaries(b)
	dir := testenv.Dir(b)
	ws := testenv.StartWalstored(b, nil, "--store", "file://"+filepath.Join(dir, "repo"), "--log-level", "warn")
	c := testenv.NewCluster(b, dir, "db", testenv.ClusterOptions{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s --repo %s --archive bench %%p'", bins.WalPush, ws.URL),
		"max_wal_size = 8GB", "checkpoint_timeout = 30min",
	}})
	c.Start()
	b.Log("loading pgbench scale 70...")
	c.Run("pgbench", "-i", "-s", "70", "-q")
	c.Exec("CHECKPOINT")
	c.WaitArchived(c.SwitchWAL(), 10*time.Minute)
	dbBytes := c.QueryInt("SELECT sum(pg_database_size(oid))::bigint FROM pg_database")

	base := testenv.PostgresDir(b, dir, "plain")
	plain := timeIt(func() {
		c.Run("pg_basebackup", "-D", filepath.Join(base, "b"), "-Ft", "-X", "none", "-c", "fast", "--no-sync")
	})

	var out testenv.Result
	backup := timeIt(func() {
		out = testenv.Run(b, dir, nil, bins.WalStored, "backup", "--repo", ws.URL, "--archive", "bench", "--pg", c.ConnString())
	})
	if out.Code != 0 {
		b.Fatalf("walstored backup: %s", out.Stderr)
	}
	m := regexp.MustCompile(`(\d+(?:\.\d+)? \w+) raw, (\d+(?:\.\d+)? \w+) stored`).FindStringSubmatch(out.Stdout)

	cpDir := testenv.PostgresDir(b, dir, "cp")
	cpTime := timeIt(func() { sh(b, dir, fmt.Sprintf("cp -a %s %s/copy && sync", c.Dir, cpDir)) })

	pgdata := filepath.Join(testenv.PostgresDir(b, dir, "restore"), "data")
	rs := timeIt(func() {
		out = testenv.Run(b, dir, nil, bins.WalFetch, "restore", "--repo", ws.URL, "--archive", "bench", "--pgdata", pgdata, "--owner", "postgres")
	})
	if out.Code != 0 {
		b.Fatalf("walfetch restore: %s", out.Stderr)
	}
	mb := float64(dbBytes) / (1 << 20)
	fmt.Printf("\nwalstore backup benchmark: pgbench scale 70, %.0f MiB of databases, walstored on a local directory, %d cores\n\n", mb, numCPU())
	fmt.Printf("| %-52s | %8s | %8s |\n|%s|%s|%s|\n", "operation", "seconds", "MB/s", strings.Repeat("-", 54), strings.Repeat("-", 10), strings.Repeat("-", 10))
	row := func(name string, d time.Duration) {
		fmt.Printf("| %-52s | %8.1f | %8.1f |\n", name, d.Seconds(), mb/d.Seconds())
	}
	row("pg_basebackup -Ft --no-sync to a local directory", plain)
	row("walstored backup (stream, zstd, SHA-256, upload)", backup)
	row("cp -a of the data directory + sync (baseline)", cpTime)
	row("walfetch restore (fetch, verify, unpack)", rs)
	if m != nil {
		fmt.Printf("\nbackup stored: %s raw as %s\n", m[1], m[2])
	}
}
