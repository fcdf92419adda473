package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walstore/walstore/tests/testenv"
)

// BenchmarkWALAgainstPgBackRest pushes and fetches the same 64 real
// segments with pgBackRest (Debian's, sync mode, zst, a repository on a
// local directory) and with walstore (walstored on a local directory),
// one process per segment as PostgreSQL calls them, in one run: wall
// time, CPU of the commands (what the database host pays), and of the
// whole machine (walstored included), and size at rest.
func BenchmarkWALAgainstPgBackRest(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	bin, err := exec.LookPath("pgbackrest")
	if err != nil {
		b.Fatal("pgbackrest is not installed: make bench installs it (Debian package pgbackrest)")
	}
	const n = 64
	bins := testenv.Binaries(b)
	b.Logf("generating %d segments of real WAL...", n)
	w := makeWorkload(b, n)
	measureIdle()

	// pgBackRest: a stanza over the cluster that wrote the WAL, run as
	// postgres (as archive_command runs).
	base := testenv.PostgresDir(b, testenv.Dir(b), "pgbackrest")
	conf := filepath.Join(base, "pgbackrest.conf")
	os.WriteFile(conf, fmt.Appendf(nil, `[global]
repo1-path=%[1]s/repo
compress-type=zst
compress-level=3
log-level-console=warn
log-level-file=off
lock-path=%[1]s/lock
spool-path=%[1]s/spool
archive-async=n
start-fast=y

[bench]
pg1-path=%[2]s
pg1-port=%[3]d
pg1-socket-path=%[4]s
pg1-user=postgres
`, base, w.gen.Dir, w.gen.Port, w.gen.SocketDir()), 0o644)
	testenv.Chown(b, base)
	pgbr := func(args ...string) string {
		return strings.Join(append([]string{"runuser", "-u", "postgres", "--", bin, "--config", conf, "--stanza", "bench"}, args...), " ")
	}
	w.gen.Start()
	sh(b, base, pgbr("stanza-create"))
	w.gen.Stop()
	for _, s := range w.segs { // postgres reads them, as its archiver would
		os.Chmod(s, 0o644)
	}
	os.Chmod(filepath.Dir(w.segs[0]), 0o755)

	var rows []row
	brPush := measure(nil, func() {
		for _, s := range w.segs {
			sh(b, base, pgbr("archive-push", s))
		}
	})
	rows = append(rows, brPush.as("push: pgbackrest archive-push (sync, zst 3)", n, 0))

	// Async, as pgBackRest recommends for a backlog: a second stanza over a
	// copy of the cluster whose pg_wal holds the segments as .ready files
	// (the async process pushes ahead from them, process-max 4), played
	// oldest first like the archiver.
	async := testenv.PostgresDir(b, testenv.Dir(b), "async")
	sh(b, base, fmt.Sprintf("cp -a %s %s/data && rm -f %s/data/postmaster.pid", w.gen.Dir, async, async))
	pgAsync := filepath.Join(async, "data")
	os.RemoveAll(filepath.Join(pgAsync, "pg_wal"))
	os.MkdirAll(filepath.Join(pgAsync, "pg_wal", "archive_status"), 0o700)
	for _, s := range w.segs {
		dst := filepath.Join(pgAsync, "pg_wal", filepath.Base(s))
		if err := os.Link(s, dst); err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(pgAsync, "pg_wal", "archive_status", filepath.Base(s)+".ready"), nil, 0o600)
	}
	testenv.Chown(b, async)
	confAsync := filepath.Join(base, "pgbackrest-async.conf")
	writeAsync := func(pgPath string) {
		os.WriteFile(confAsync, fmt.Appendf(nil, `[global]
repo1-path=%[1]s/repo-async
compress-type=zst
compress-level=3
log-level-console=warn
log-level-file=off
lock-path=%[1]s/lock-async
spool-path=%[1]s/spool-async
archive-async=y
process-max=4

[bench]
pg1-path=%[2]s
pg1-port=%[3]d
pg1-socket-path=%[4]s
pg1-user=postgres
`, base, pgPath, w.gen.Port, w.gen.SocketDir()), 0o644)
		testenv.Chown(b, base)
	}
	pgbrAsync := func(args ...string) string {
		return strings.Join(append([]string{"runuser", "-u", "postgres", "--", bin, "--config", confAsync, "--stanza", "bench"}, args...), " ")
	}
	// The stanza is made against the running cluster; the pushes then
	// read the copy's pg_wal (the same system).
	writeAsync(w.gen.Dir)
	w.gen.Start()
	sh(b, base, pgbrAsync("stanza-create"))
	w.gen.Stop()
	writeAsync(pgAsync)
	brAsync := measure(nil, func() {
		for _, s := range w.segs {
			name := filepath.Base(s)
			sh(b, pgAsync, pgbrAsync("archive-push", "pg_wal/"+name))
			os.Rename(filepath.Join(pgAsync, "pg_wal", "archive_status", name+".ready"), filepath.Join(pgAsync, "pg_wal", "archive_status", name+".done"))
		}
	})
	brAsync.note = "client CPU is in the detached async process: see all"
	rows = append(rows, brAsync.as("push: pgbackrest archive-push (async, process-max 4)", n, brPush.elapsed))

	repoDir := filepath.Join(testenv.Dir(b), "repo")
	ws := testenv.StartWalstored(b, nil, "--store", "file://"+repoDir, "--log-level", "warn")
	wsPush := measure(ws, func() {
		for _, s := range w.segs {
			sh(b, filepath.Dir(s), fmt.Sprintf("%s --repo %s --archive bench --jobs 1 %s", bins.WalPush, ws.URL, s))
		}
	})
	rows = append(rows, wsPush.as("push: walpush --jobs 1", n, brPush.elapsed))
	// walstore's own push-ahead, the counterpart of pgBackRest's async
	// mode: a backlog of .ready files, walpush with its default --jobs
	// (a detached pusher stores ahead; its CPU shows in "all").
	backlog := fakePGData(b, w)
	wsAhead := measure(ws, func() {
		archiveBacklog(b, backlog, fmt.Sprintf("%s --repo %s --archive ahead %%p", bins.WalPush, ws.URL))
	})
	wsAhead.note = "client CPU is in the detached pusher: see all"
	rows = append(rows, wsAhead.as("push: backlog of .ready, walpush default --jobs", n, brAsync.elapsed))
	// The archive module's path (archive_library = 'walstore'): a walpush
	// agent, started before the clock, serves the backlog; the archiver's
	// calls are played over its socket as the module makes them (one
	// connection and one line each way per file, in the archiver's order).
	modData := fakePGData(b, w)
	os.WriteFile(filepath.Join(modData, "PG_VERSION"), []byte("15\n"), 0o600)
	ag := testenv.StartAgent(b, modData, nil, "--repo", ws.URL, "--archive", "module")
	a0 := ag.CPU()
	wsModule := measure(ws, func() { archiveBacklogModule(b, modData, ag.Socket) })
	wsModule.clientCPU += ag.CPU() - a0
	wsModule.note = "client CPU is the agent's; no process per segment"
	rows = append(rows, wsModule.as("push: backlog of .ready, archive module + agent", n, brAsync.elapsed))

	fetchDir := testenv.PostgresDir(b, testenv.Dir(b), "fetch")
	os.MkdirAll(filepath.Join(fetchDir, "pg_wal"), 0o700)
	testenv.Chown(b, fetchDir)
	brFetch := measure(nil, func() {
		for _, s := range w.segs {
			sh(b, fetchDir, pgbr("archive-get", filepath.Base(s), filepath.Join(fetchDir, "pg_wal", "RECOVERYXLOG")))
			os.Remove(filepath.Join(fetchDir, "pg_wal", "RECOVERYXLOG"))
		}
	})
	rows = append(rows, brFetch.as("fetch: pgbackrest archive-get", n, 0))
	pgdata := emptyPGData(b)
	wsFetch := measure(ws, func() {
		fetchAll(b, pgdata, w.segs, fmt.Sprintf("%s --repo %s --archive bench --prefetch 0 %%f %%p", bins.WalFetch, ws.URL))
	})
	rows = append(rows, wsFetch.as("fetch: walfetch --prefetch 0", n, brFetch.elapsed))

	// Each tool's best fetch mode: pgBackRest's async archive-get (a
	// detached process fills a queue in its spool ahead of recovery) from
	// the async repository, and walfetch's default prefetch (a detached
	// prefetcher fills the spool ahead).
	// (pgBackRest reads the cluster's pg_control: the copy's.)
	fetchAsync := pgAsync
	brFetchAsync := measure(nil, func() {
		for _, s := range w.segs {
			sh(b, fetchAsync, pgbrAsync("archive-get", filepath.Base(s), filepath.Join(fetchAsync, "pg_wal", "RECOVERYXLOG")))
			os.Remove(filepath.Join(fetchAsync, "pg_wal", "RECOVERYXLOG"))
		}
	})
	brFetchAsync.note = "client CPU is in the detached async process: see all"
	rows = append(rows, brFetchAsync.as("fetch: pgbackrest archive-get (async)", n, brFetch.elapsed))
	pgdataAhead := emptyPGData(b)
	wsFetchAhead := measure(ws, func() {
		fetchAll(b, pgdataAhead, w.segs, fmt.Sprintf("%s --repo %s --archive bench %%f %%p", bins.WalFetch, ws.URL))
	})
	wsFetchAhead.note = "client CPU is in the detached prefetcher: see all"
	rows = append(rows, wsFetchAhead.as("fetch: walfetch default --prefetch", n, brFetchAsync.elapsed))

	fmt.Printf("\nWAL side by side with pgBackRest %s: %d real 16 MiB segments, one process per segment, %d cores (walstored on the same cores)\n\n", pgbackrestVersion(bin), n, numCPU())
	fmt.Printf("| %-56s | %7s | %7s | %6s | %17s | %20s | %14s | %8s | %6s | %s\n", "operation", "seg/s", "MB/s", "vs br", "cpu ms/seg client", "cpu ms/seg walstored", "cpu ms/seg all", "req/seg", "busy", "note")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|---|\n", strings.Repeat("-", 58), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 8), strings.Repeat("-", 19), strings.Repeat("-", 22), strings.Repeat("-", 16), strings.Repeat("-", 10), strings.Repeat("-", 8))
	for _, r := range rows {
		fmt.Println(r)
	}
	brSize, wsSize := dirSize(filepath.Join(base, "repo", "archive")), dirSize(filepath.Join(repoDir, "bench"))
	fmt.Printf("\nat rest / raw: pgBackRest %.3f, walstore %.3f (%d MiB of WAL)\n", float64(brSize)/float64(w.raw), float64(wsSize)/float64(w.raw), w.raw>>20)
}

// archiveBacklogModule plays PostgreSQL's archiver with archive_library =
// 'walstore' over a backlog: oldest .ready first, each file one request
// on the agent's socket, .ready renamed to .done on OK.
func archiveBacklogModule(b *testing.B, pgdata, socket string) {
	playArchiver(pgdata, func(name string) {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(conn, "ARCHIVE %s %s\n", name, filepath.Join(pgdata, "pg_wal", name))
		ans, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.HasPrefix(ans, "OK") {
			b.Fatalf("agent: %s: %q %v", name, ans, err)
		}
	})
}

func pgbackrestVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), "pgBackRest "))
}
