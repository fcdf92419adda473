package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/tests/testenv"
)

// BenchmarkBackup prints backup and restore figures on a cluster of about
// 2 GiB shaped like production (an append-only history table, a smaller
// hot table under random updates), through walstored on a local
// directory, against pg_basebackup into a local tar and cp -a, in the
// same run: full and incremental backups (streamed from pg_basebackup and
// read locally with --pgdata), a full restore, a delta restore over a
// copy with 5% of its blocks damaged, objects per stored GiB and the
// repository after three backups with retention of one.
func BenchmarkBackup(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	bins := testenv.Binaries(b)
	dir := testenv.Dir(b)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(b, nil, "--store", "file://"+repoDir, "--log-level", "warn")
	// Two archives of the same cluster: one for backups streamed by
	// pg_basebackup, one for backups read locally, so each starts full.
	c := testenv.NewCluster(b, dir, "db", testenv.ClusterOptions{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%[1]s --repo %[2]s --archive bench %%p && %[1]s --repo %[2]s --archive local %%p && %[1]s --repo %[2]s --archive localfull %%p'", bins.WalPush, ws.URL),
		"max_wal_size = 8GB", "checkpoint_timeout = 30min",
	}})
	c.Start()
	b.Log("loading about 2 GiB: a history table and pgbench scale 15 as the hot table...")
	c.Run("pgbench", "-i", "-s", "15", "-q")
	c.Exec(`CREATE TABLE history (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), account int, pad text)`)
	const historyRows = 14_300_000
	for i := 0; i < 13; i++ {
		c.Exec(`INSERT INTO history (account, pad) SELECT (random()*1500000)::int, md5(random()::text) || md5(random()::text) FROM generate_series(1, $1)`, historyRows/13)
	}
	c.Exec("VACUUM (FREEZE, ANALYZE)")
	c.Exec("CHECKPOINT")
	loaded := time.Now()
	c.WaitArchived(c.SwitchWAL(), 10*time.Minute)
	measureIdle()
	dbBytes := c.QueryInt("SELECT sum(pg_database_size(oid))::bigint FROM pg_database")
	mb := float64(dbBytes) / (1 << 20)

	// pgBackRest beside it (Debian's, zst 3, process-max 2 for the two
	// cores, a repository on the same disk), run as postgres. Its WAL
	// check is off: archive_command feeds walstore's archives only, and
	// what is compared is the data path.
	brBin, err := exec.LookPath("pgbackrest")
	if err != nil {
		b.Fatal("pgbackrest is not installed: make bench installs it (Debian package pgbackrest)")
	}
	brBase := testenv.PostgresDir(b, dir, "pgbackrest")
	brConf := filepath.Join(brBase, "pgbackrest.conf")
	os.WriteFile(brConf, fmt.Appendf(nil, `[global]
repo1-path=%[1]s/repo
compress-type=zst
compress-level=3
process-max=2
start-fast=y
archive-check=n
log-level-console=warn
log-level-file=off
lock-path=%[1]s/lock
spool-path=%[1]s/spool

[bench]
pg1-path=%[2]s
pg1-port=%[3]d
pg1-socket-path=%[4]s
pg1-user=postgres
`, brBase, c.Dir, c.Port, c.SocketDir()), 0o644)
	testenv.Chown(b, brBase)
	pgbr := func(args ...string) string {
		return strings.Join(append([]string{"runuser", "-u", "postgres", "--", brBin, "--config", brConf, "--stanza", "bench"}, args...), " ")
	}
	sh(b, brBase, pgbr("stanza-create"))
	brBackups := filepath.Join(brBase, "repo", "backup", "bench")

	var unread string // what the last backup said it took unread
	backup := func(archiveName string, extra ...string) (archive.Record, timing) {
		var out testenv.Result
		d := timeBusyWS(ws, func() {
			args := append([]string{"backup", "--repo", ws.URL, "--archive", archiveName, "--pg", c.ConnString(), "--json"}, extra...)
			out = testenv.Run(b, dir, nil, bins.WalStored, args...)
		})
		if out.Code != 0 {
			b.Fatalf("walstored backup: %s", out.Stderr)
		}
		var rec archive.Record
		if err := json.Unmarshal([]byte(out.Stdout), &rec); err != nil {
			b.Fatal(err)
		}
		unread = ""
		if i := strings.Index(out.Stderr, "files unchanged since backup"); i >= 0 {
			unread = strings.TrimSpace(out.Stderr[strings.LastIndex(out.Stderr[:i], "\n")+1:])
		}
		return rec, d
	}
	local := []string{"--pgdata", c.Dir, "--skip-archive-command-check"}

	plainDir := testenv.PostgresDir(b, dir, "plain")
	plain := timeBusy(func() {
		c.Run("pg_basebackup", "-D", filepath.Join(plainDir, "b"), "-Ft", "-X", "none", "-c", "fast", "--no-sync")
	})
	full, fullTime := backup("bench")
	// As on a production cluster, whose cold files were last written long
	// before its backups: the local reader takes a file unread from the
	// newest backup only when it was written a minute or more before that
	// backup began.
	time.Sleep(time.Until(loaded.Add(65 * time.Second)))
	lfull, lfullTime := backup("local", local...)
	backup("localfull", local...)
	brFullTime := timeBusy(func() { sh(b, brBase, pgbr("backup", "--type=full")) })
	brFullSize := dirSize(brBackups)

	// 2% appended, 1% of the hot table's rows updated.
	c.Exec(`INSERT INTO history (account, pad) SELECT (random()*1500000)::int, md5(random()::text) || md5(random()::text) FROM generate_series(1, $1)`, historyRows/50)
	c.Exec(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < 0.01`)
	c.Exec("CHECKPOINT")
	incr, incrTime := backup("bench")
	lincr, lincrTime := backup("local", local...)
	lincrUnread := unread
	lincrFull, lincrFullTime := backup("localfull", append(local, "--full-read")...)
	brIncrTime := timeBusy(func() { sh(b, brBase, pgbr("backup", "--type=incr")) })
	brIncrSize := dirSize(brBackups) - brFullSize

	cpDir := testenv.PostgresDir(b, dir, "cp")
	cpTime := timeBusy(func() { sh(b, dir, fmt.Sprintf("cp -a %s %s/copy && sync", c.Dir, cpDir)) })

	pgdata := filepath.Join(testenv.PostgresDir(b, dir, "restore"), "data")
	restore := func(extra ...string) (testenv.Result, timing) {
		var out testenv.Result
		d := timeBusyWS(ws, func() {
			args := append([]string{"restore", "--repo", ws.URL, "--archive", "bench", "--backup", incr.ID, "--pgdata", pgdata, "--owner", "postgres"}, extra...)
			out = testenv.Run(b, dir, nil, bins.WalFetch, args...)
			sh(b, dir, "sync")
		})
		if out.Code != 0 {
			b.Fatalf("walfetch restore: %s", out.Stderr)
		}
		return out, d
	}
	_, restoreTime := restore()
	brRestoreDir := filepath.Join(testenv.PostgresDir(b, dir, "br-restore"), "data")
	brRestoreTime := timeBusy(func() {
		sh(b, brBase, pgbr("restore", "--pg1-path="+brRestoreDir))
		sh(b, dir, "sync")
	})
	blocks, damaged := damageBlocks(b, pgdata, 0.05)
	sh(b, dir, "sync") // the damage's own writes are not the restore's to flush
	dout, deltaTime := restore("--delta", "--json")
	var dres struct {
		Delta struct {
			Bytes       int64 `json:"bytes_written"`
			Fetched     int64 `json:"bytes_fetched"`
			Packs       int   `json:"packs"`
			PacksInPart int   `json:"packs_read_in_part"`
		} `json:"delta"`
	}
	json.Unmarshal([]byte(dout.Stdout), &dres)

	// A third backup after more changes, then retention of one.
	c.Exec(`INSERT INTO history (account, pad) SELECT (random()*1500000)::int, md5(random()::text) || md5(random()::text) FROM generate_series(1, $1)`, historyRows/50)
	c.Exec(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < 0.01`)
	third, _ := backup("bench")
	beforeRetain := dirSize(filepath.Join(repoDir, "bench", "packs"))
	time.Sleep(time.Until(incr.StopTime.Add(archive.PackGrace + 2*time.Second)))
	if out := testenv.Run(b, dir, nil, bins.WalStored, "retain", "--repo", ws.URL, "--archive", "bench", "--keep-last", "1"); out.Code != 0 {
		b.Fatalf("retain: %s", out.Stderr)
	}
	afterRetain := dirSize(filepath.Join(repoDir, "bench", "packs"))
	objects := 0
	filepath.Walk(filepath.Join(repoDir, "bench", "packs"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			objects++
		}
		return nil
	})

	// At rest: the storage host's idle-time recompression (zstd's default
	// level with entropy coding) of what retention kept.
	var recompressTime timing
	recompressTime = timeBusy(func() {
		if out := testenv.Run(b, dir, nil, bins.WalStored, "recompress", "--store", "file://"+repoDir, "--archive", "bench", "--min-age", "0"); out.Code != 0 {
			b.Fatalf("recompress: %s", out.Stderr)
		}
	})
	afterRecompress := dirSize(filepath.Join(repoDir, "bench", "packs"))

	fmt.Printf("\nwalstore backup benchmark: %.0f MiB of databases (history table %d rows, pgbench scale 15 as the hot table), walstored on a local directory, %d cores\n\n", mb, historyRows, numCPU())
	fmt.Printf("| %-62s | %8s | %8s | %10s | %6s |\n|%s|%s|%s|%s|%s|\n", "operation", "seconds", "MB/s", "vs. base", "busy", strings.Repeat("-", 64), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 12), strings.Repeat("-", 8))
	row := func(name string, t, base timing) {
		fmt.Printf("| %-62s | %8.1f | %8.1f | %9.2fx | %5.0f%% |\n", name, t.d.Seconds(), mb/t.d.Seconds(), base.d.Seconds()/t.d.Seconds(), 100*t.busy)
	}
	row("pg_basebackup -Ft --no-sync to a local directory (base)", plain, plain)
	row("walstored backup, full (pg_basebackup stream)", fullTime, plain)
	row("walstored backup --pgdata, full (local reader)", lfullTime, plain)
	row("walstored backup, incremental (pg_basebackup stream)", incrTime, plain)
	row("walstored backup --pgdata, incremental (local reader)", lincrTime, plain)
	row("walstored backup --pgdata --full-read, incremental", lincrFullTime, plain)
	row("cp -a of the data directory + sync (base for restores)", cpTime, cpTime)
	row("walfetch restore, full, + sync", restoreTime, cpTime)
	row(fmt.Sprintf("walfetch restore --delta over %.0f%% damaged blocks, + sync", 100*float64(damaged)/float64(blocks)), deltaTime, cpTime)
	fmt.Println()
	fmt.Printf("side by side with pgBackRest %s (zst 3, process-max 2), the same cluster and changes; cpu: seconds of CPU of the whole machine, and of everything but walstored (the database host's share)\n\n", pgbackrestVersion(brBin))
	fmt.Printf("| %-56s | %8s | %8s | %10s | %10s | %10s |\n|%s|%s|%s|%s|%s|%s|\n", "operation", "seconds", "vs. br", "cpu s all", "cpu s host", "stored MiB",
		strings.Repeat("-", 58), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 12))
	side := func(name string, t, base timing, stored int64) {
		st := "-"
		if stored > 0 {
			st = fmt.Sprintf("%.1f", float64(stored)/(1<<20))
		}
		vs := "-"
		if base.d > 0 {
			vs = fmt.Sprintf("%.2fx", base.d.Seconds()/t.d.Seconds())
		}
		fmt.Printf("| %-56s | %8.1f | %8s | %10.1f | %10.1f | %10s |\n", name, t.d.Seconds(), vs, t.cpu.Seconds(), (t.cpu - t.ws).Seconds(), st)
	}
	side("pgbackrest backup --type=full", brFullTime, timing{}, brFullSize)
	side("walstored backup, full (stream)", fullTime, brFullTime, full.StoredSize)
	side("walstored backup --pgdata, full (local reader)", lfullTime, brFullTime, lfull.StoredSize)
	side("pgbackrest backup --type=incr", brIncrTime, timing{}, brIncrSize)
	side("walstored backup, incremental (stream)", incrTime, brIncrTime, incr.StoredSize)
	side("walstored backup --pgdata, incremental (local reader)", lincrTime, brIncrTime, lincr.StoredSize)
	side("pgbackrest restore (the incremental) + sync", brRestoreTime, timing{}, 0)
	side("walfetch restore (the incremental) + sync", restoreTime, brRestoreTime, 0)
	fmt.Println()
	fmt.Printf("stored by the full backup: %s (stream), %s (local); raw %s\n", size(full.StoredSize), size(lfull.StoredSize), size(full.RawSize))
	fmt.Printf("added by the incremental after 2%% appended and 1%% of the hot rows updated: %s (%.1f%% of the full; local %s, %.1f%%)\n",
		size(incr.StoredSize), 100*float64(incr.StoredSize)/float64(full.StoredSize), size(lincr.StoredSize), 100*float64(lincr.StoredSize)/float64(lfull.StoredSize))
	fmt.Printf("local incremental: added %s; %s\nlocal incremental with --full-read (every file read, another archive with its own full): added %s\n", size(lincr.StoredSize), lincrUnread, size(lincrFull.StoredSize))
	fmt.Printf("delta restore: %.2f of the full restore's time, wrote %s (%.1f%% of %s), read %s from the repository (%d of %d packs in part)\n", deltaTime.d.Seconds()/restoreTime.d.Seconds(),
		size(dres.Delta.Bytes), 100*float64(dres.Delta.Bytes)/float64(full.RawSize), size(full.RawSize), size(dres.Delta.Fetched), dres.Delta.PacksInPart, dres.Delta.Packs)
	fmt.Printf("packs after three backups (third added %s): %s; after retain --keep-last 1: %s, %d objects, %.1f objects per stored GiB\n",
		size(third.StoredSize), size(beforeRetain), size(afterRetain), objects, float64(objects)/(float64(afterRetain)/(1<<30)))
	fmt.Printf("at rest after walstored recompress (%.1f s, %.1f s of CPU): packs %s, %.3f of before; the full backup so stored: about %s (pgBackRest's full: %s)\n",
		recompressTime.d.Seconds(), recompressTime.cpu.Seconds(), size(afterRecompress), float64(afterRecompress)/float64(afterRetain),
		size(int64(float64(full.StoredSize)*float64(afterRecompress)/float64(afterRetain))), size(brFullSize))
}

// timing is how long an operation took and the share of the machine's
// cores busy meanwhile (near 100%: it was bound by the CPU).
type timing struct {
	d    time.Duration
	busy float64
	cpu  time.Duration // of the whole machine
	ws   time.Duration // of walstored, when one served the step
}

func timeBusy(f func()) timing { return timeBusyWS(nil, f) }

// timeBusyWS is timeBusy that also counts ws's CPU (nil: none).
func timeBusyWS(ws *testenv.Walstored, f func()) timing {
	var t timing
	var w0 time.Duration
	if ws != nil {
		w0 = ws.CPU()
	}
	t.busy, t.cpu = busyDuring(func() { t.d = timeIt(f) })
	if ws != nil {
		t.ws = ws.CPU() - w0
	}
	return t
}

// damageBlocks overwrites a fraction of the 128 KiB blocks of the
// relation files under pgdata/base with random bytes, and returns how
// many blocks there are and how many it damaged.
func damageBlocks(b *testing.B, pgdata string, fraction float64) (blocks, damaged int) {
	junk := make([]byte, 128<<10)
	for i := range junk {
		junk[i] = byte(rand.IntN(256))
	}
	filepath.Walk(filepath.Join(pgdata, "base"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for off := int64(0); off < fi.Size(); off += int64(len(junk)) {
			blocks++
			if rand.Float64() < fraction {
				n := min(int64(len(junk)), fi.Size()-off)
				f.WriteAt(junk[:n], off)
				damaged++
			}
		}
		return nil
	})
	return blocks, damaged
}

func size(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
