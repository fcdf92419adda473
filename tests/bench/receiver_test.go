package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// BenchmarkZeroDataLoss prints, for the loss of the primary's host under
// a steady write load, what a restore from the archive recovers:
// archive_command alone (archive_timeout = 60), with walstored's WAL
// receiver asynchronous, and synchronous; and the commit latency a
// synchronous receiver adds, against a local synchronous standby, in
// the same run.
func BenchmarkZeroDataLoss(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	fmt.Printf("\nwalstore zero data loss: the primary's host lost after 10 s of pgbench (4 clients), restore of the newest backup to the end of the archive\n\n")
	fmt.Printf("| %-44s | %10s | %12s | %14s | %12s |\n|%s|%s|%s|%s|%s|\n", "setup", "commits", "lost commits", "lost WAL", "commit ms", strings.Repeat("-", 46), strings.Repeat("-", 12), strings.Repeat("-", 14), strings.Repeat("-", 16), strings.Repeat("-", 14))
	for _, m := range []struct {
		name     string
		receiver bool
		syncName string // synchronous_standby_names
		standby  bool   // a local streaming standby named "standby1"
	}{
		{"archive_command alone (archive_timeout = 60)", false, "", false},
		{"+ walstored receiver, asynchronous", true, "", false},
		{"+ walstored receiver, synchronous", true, "walstored", false},
		{"local streaming standby, synchronous", false, "standby1", true},
	} {
		row := lossRun(b, m.receiver, m.syncName, m.standby)
		lost, lostWAL := fmt.Sprint(row.lost), humanBytes(row.lostWAL)
		if m.standby {
			// Its commits are safe on the standby, not in the archive: the
			// row is here for the commit latency.
			lost, lostWAL = "(on standby)", "-"
		}
		fmt.Printf("| %-44s | %10d | %12s | %14s | %12.2f |\n", m.name, row.commits, lost, lostWAL, row.latencyMS)
	}
}

type lossRow struct {
	commits, lost int64
	lostWAL       int64
	latencyMS     float64
}

func lossRun(b *testing.B, withReceiver bool, syncName string, withStandby bool) lossRow {
	bins := testenv.Binaries(b)
	dir := testenv.Dir(b)
	p := testenv.NewCluster(b, dir, "primary", testenv.ClusterOptions{})
	args := []string{"--store", "file://" + filepath.Join(dir, "repo"), "--log-level", "warn"}
	if withReceiver {
		args = append(args, "--receive", fmt.Sprintf("main=host=127.0.0.1 port=%d user=postgres", p.Port), "--receive-create-slot", "--receive-dir", filepath.Join(dir, "receive"))
	}
	ws := testenv.StartWalstored(b, nil, args...)
	p.WriteConf("archive_mode = on", fmt.Sprintf("archive_command = '%s --repo %s %%p'", bins.WalPush, ws.URL), "archive_timeout = 60")
	p.Start()
	p.Run("pgbench", "-i", "-s", "5", "-q")
	p.Exec(`CREATE TABLE commits (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())`)
	if res := testenv.Run(b, dir, nil, bins.WalStored, "backup", "--repo", ws.URL, "--pg", p.ConnString()); res.Code != 0 {
		b.Fatal(res.Stderr)
	}
	if withStandby {
		pg := filepath.Join(testenv.PostgresDir(b, dir, "standby-parent"), "data")
		if res := testenv.Run(b, dir, nil, bins.WalFetch, "restore", "--repo", ws.URL, "--pgdata", pg, "--owner", "postgres", "--standby"); res.Code != 0 {
			b.Fatal(res.Stderr)
		}
		s := testenv.OpenCluster(b, pg)
		s.AutoConf(fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=standby1'", p.Port))
		s.Start()
		testenv.WaitFor(b, time.Minute, "the standby to stream", func() bool {
			return p.QueryInt("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND state = 'streaming'") == 1
		})
	}
	if syncName != "" {
		// Synchronous only once the standby streams: before, every commit
		// (pgbench -i's too) would wait for it.
		p.Exec(fmt.Sprintf("ALTER SYSTEM SET synchronous_standby_names = '%s'", syncName))
		p.Exec("SELECT pg_reload_conf()")
		testenv.WaitFor(b, time.Minute, syncName+" to be the synchronous standby", func() bool {
			return p.QueryString("SELECT coalesce(string_agg(sync_state, ','), '') FROM pg_stat_replication WHERE application_name = $1", syncName) == "sync"
		})
	}
	script := filepath.Join(testenv.PostgresDir(b, dir, "script"), "commit.sql")
	writeFile(b, script, "INSERT INTO commits DEFAULT VALUES;\n")
	out := p.Run("pgbench", "-n", "-c", "4", "-j", "2", "-T", "10", "-f", script)
	var row lossRow
	if m := regexp.MustCompile(`latency average = ([0-9.]+) ms`).FindStringSubmatch(out); m != nil {
		fmt.Sscanf(m[1], "%g", &row.latencyMS)
	}
	row.commits = p.QueryInt("SELECT count(*) FROM commits")
	endLSN := p.QueryString("SELECT pg_current_wal_flush_lsn()::text")
	p.Kill9()
	p.Wipe()
	pg := filepath.Join(testenv.PostgresDir(b, dir, "restored-parent"), "data")
	if res := testenv.Run(b, dir, nil, bins.WalFetch, "restore", "--repo", ws.URL, "--pgdata", pg, "--owner", "postgres"); res.Code != 0 {
		b.Fatal(res.Stderr)
	}
	c := testenv.OpenCluster(b, pg)
	c.AutoConf("archive_mode = off", "synchronous_standby_names = ''")
	c.Start()
	c.WaitRecovered(5 * time.Minute)
	row.lost = row.commits - c.QueryInt("SELECT count(*) FROM commits")
	recovered := c.QueryString("SELECT pg_current_wal_lsn()::text") // after promotion: a bit past the end of what was replayed
	row.lostWAL = max(0, lsn(endLSN)-lsn(replayEnd(c, recovered)))
	c.Stop()
	ws.Stop(b)
	return row
}

// replayEnd is where recovery ended: the switch point of the new timeline.
func replayEnd(c *testenv.Cluster, fallback string) string {
	v := c.QueryString("SELECT coalesce((SELECT redo_lsn::text FROM pg_control_checkpoint()), '')")
	if v == "" {
		return fallback
	}
	return v
}

func lsn(s string) int64 {
	var hi, lo uint64
	fmt.Sscanf(s, "%X/%X", &hi, &lo)
	return int64(hi<<32 | lo)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func writeFile(b *testing.B, path, text string) {
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	testenv.Chown(b, path)
}
