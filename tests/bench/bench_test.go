// Package bench measures walstore against plain cp in the same run, on
// real WAL from a pgbench + random-data workload. Run it with `make bench`;
// it prints one table. Figures, not assertions: tests assert behaviour.
package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/client/push"
	"github.com/walstore/walstore/tests/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const segSize = 16 << 20

// workload is a set of real, archived 16 MiB segments.
type workload struct {
	gen  *testenv.Cluster // the cluster that wrote it (stopped)
	dir  string
	segs []string // paths, in order
	raw  int64
}

// makeWorkload runs pgbench and random-data inserts on a real cluster
// until it has archived n segments (collected with plain cp).
func makeWorkload(b *testing.B, n int) workload { return makeWorkloadOf(b, n, true) }

// makeWorkloadOf is makeWorkload; without random bytes, the rows are
// pgbench's and hex text (WAL that compresses well, where entropy coding
// pays).
func makeWorkloadOf(b *testing.B, n int, random bool) workload {
	dir := testenv.Dir(b)
	rawDir := testenv.PostgresDir(b, dir, "raw")
	c := testenv.NewCluster(b, dir, "gen", testenv.ClusterOptions{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = 'cp %%p %s/%%f'", rawDir),
		"max_wal_size = 8GB",
		"checkpoint_timeout = 30min",
	}})
	c.Start()
	c.Exec(`CREATE TABLE noise (id bigserial, v bytea)`)
	for round := 0; ; round++ {
		segs, _ := filepath.Glob(filepath.Join(rawDir, "0000000100000000000000??"))
		if len(segs) > n+1 {
			break
		}
		if round > 40 {
			b.Fatalf("workload: only %d segments after %d rounds", len(segs), round)
		}
		c.Run("pgbench", "-i", "-s", "1", "-q", "--no-vacuum")
		c.Run("pgbench", "-n", "-c", "2", "-t", "1500")
		// Random bytes: with pgbench's very compressible rows and WAL's
		// own headers this makes WAL about 2:1 compressible, like real
		// tables with mixed data; not all zeros.
		if random {
			c.Exec(`INSERT INTO noise (v) SELECT decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') FROM generate_series(1, 250000)`)
		} else {
			c.Exec(`INSERT INTO noise (v) SELECT convert_to('order ' || g || ' customer ' || (g % 977) || ' ' || md5(g::text), 'UTF8') FROM generate_series(1, 250000) g`)
		}
		c.WaitArchived(c.SwitchWAL(), 5*time.Minute)
	}
	c.Stop()
	segs, _ := filepath.Glob(filepath.Join(rawDir, "0000000100000000000000??"))
	sort.Strings(segs)
	segs = segs[1 : n+1] // skip the initdb segment
	w := workload{gen: c, dir: dir, segs: segs, raw: int64(n) * segSize}
	return w
}

type row struct {
	name      string
	elapsed   time.Duration
	segs      int
	base      time.Duration // the cp figure this row compares to, if any
	note      string
	clientCPU time.Duration // CPU of the commands (not of detached helpers)
	serverCPU time.Duration // CPU of walstored
	busy      float64       // share of the machine's cores busy meanwhile
	allCPU    time.Duration // busy CPU time of the whole machine meanwhile, idle noise removed
	requests  float64       // HTTP requests walstored served (-1: not through walstored)
}

func (r row) String() string {
	mbs := float64(r.segs) * segSize / (1 << 20) / r.elapsed.Seconds()
	ratio := ""
	if r.base > 0 {
		ratio = fmt.Sprintf("%.2f×", r.base.Seconds()/r.elapsed.Seconds())
	}
	perSeg := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(d.Milliseconds())/float64(r.segs))
	}
	busy := "-"
	if r.busy > 0 {
		busy = fmt.Sprintf("%.0f%%", 100*r.busy)
	}
	reqs := "-"
	if r.requests >= 0 {
		reqs = fmt.Sprintf("%.2f", r.requests/float64(r.segs))
	}
	return fmt.Sprintf("| %-56s | %7.1f | %7.1f | %6s | %17s | %20s | %14s | %8s | %6s | %s", r.name, float64(r.segs)/r.elapsed.Seconds(), mbs, ratio,
		perSeg(r.clientCPU), perSeg(r.serverCPU), perSeg(r.allCPU), reqs, busy, r.note)
}

// sh runs a command line the way PostgreSQL runs archive_command.
func sh(b *testing.B, dir, cmdline string) {
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
}

// timeIt times f. Dirty pages left by what ran before (generating the
// workload, the previous row) are flushed first: otherwise the first
// fsyncs of a row wait for them, which once made `cp + sync` look three
// times slower than it is.
func timeIt(f func()) time.Duration {
	syscall.Sync()
	start := time.Now()
	f()
	return time.Since(start)
}

// machineTicks reads the busy and total CPU time of all cores from
// /proc/stat (idle and iowait count as not busy).
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// busyDuring runs f and returns the share of the machine's cores that
// were busy meanwhile (near 100% means the row is CPU-bound) and the busy
// CPU time of all processes, detached helpers included, less what the
// idle machine spends in that time (idleShare).
func busyDuring(f func()) (share float64, all time.Duration) {
	b0, t0 := machineTicks()
	f()
	b1, t1 := machineTicks()
	if t1 <= t0 {
		return 0, 0
	}
	share = float64(b1-b0) / float64(t1-t0)
	noise := time.Duration(idleShare * float64(t1-t0) * 10 * float64(time.Millisecond))
	return share, max(0, time.Duration(b1-b0)*10*time.Millisecond-noise)
}

// idleShare is the share of the machine's cores busy while nothing runs
// (set by measureIdle): subtracted from each row's CPU of all processes.
var idleShare float64

// measureIdle samples the idle machine for a few seconds.
func measureIdle() {
	syscall.Sync()
	time.Sleep(time.Second)
	b0, t0 := machineTicks()
	time.Sleep(3 * time.Second)
	b1, t1 := machineTicks()
	if t1 > t0 {
		idleShare = float64(b1-b0) / float64(t1-t0)
	}
}

// measure times f and the CPU spent by the commands it ran and by ws (nil:
// none), and how busy the machine was meanwhile.
func measure(ws *testenv.Walstored, f func()) row {
	r := row{requests: -1}
	c0 := testenv.ChildrenCPU()
	var s0 time.Duration
	var q0 float64
	if ws != nil {
		s0, q0 = ws.CPU(), requestsServed(ws)
	}
	syscall.Sync()
	r.busy, r.allCPU = busyDuring(func() { r.elapsed = timeIt(f) })
	r.clientCPU = testenv.ChildrenCPU() - c0
	if ws != nil {
		r.serverCPU = ws.CPU() - s0
		r.requests = requestsServed(ws) - q0
	}
	return r
}

// requestsServed sums walstored's walstore_http_requests_total over
// every operation but its own /metrics.
func requestsServed(ws *testenv.Walstored) float64 {
	resp, err := http.Get(ws.URL + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "walstore_http_requests_total{") || strings.Contains(line, `op="metrics"`) {
			continue
		}
		var v float64
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			fmt.Sscanf(line[i+1:], "%g", &v)
		}
		total += v
	}
	return total
}

// as names a measured row and says what it compares to.
func (r row) as(name string, segs int, base time.Duration) row {
	r.name, r.segs, r.base = name, segs, base
	return r
}

// dirSize sums the sizes of regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// fakePGData lays the segments into a pg_wal with a .ready file each, as
// PostgreSQL leaves them when archiving has fallen behind.
func fakePGData(b *testing.B, w workload) string {
	pgdata := filepath.Join(testenv.Dir(b), "pgdata")
	status := filepath.Join(pgdata, "pg_wal", "archive_status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		b.Fatal(err)
	}
	for _, s := range w.segs {
		dst := filepath.Join(pgdata, "pg_wal", filepath.Base(s))
		if err := os.Link(s, dst); err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(status, filepath.Base(s)+".ready"), nil, 0o600)
	}
	fakePostmaster(b, pgdata)
	return pgdata
}

// fakePostmaster makes pgdata look served by a running PostgreSQL (this
// process), as it is when PostgreSQL calls archive_command and
// restore_command: the detached pusher and prefetcher stop, and walfetch
// does not prefetch, for a data directory whose server is gone.
func fakePostmaster(b *testing.B, pgdata string) {
	if err := os.WriteFile(filepath.Join(pgdata, "postmaster.pid"), fmt.Appendf(nil, "%d\n%s\n", os.Getpid(), pgdata), 0o600); err != nil {
		b.Fatal(err)
	}
}

// archiveBacklog plays PostgreSQL's archiver over a backlog: oldest .ready
// first, one archive_command at a time, .ready renamed to .done on success.
func archiveBacklog(b *testing.B, pgdata, command string) {
	playArchiver(pgdata, func(name string) {
		sh(b, pgdata, strings.ReplaceAll(command, "%p", "pg_wal/"+name))
	})
}

// playArchiver calls archive for each .ready file of pgdata's pg_wal,
// oldest first, one at a time, renaming .ready to .done after each (the
// call fails the benchmark on failure), until none is left.
func playArchiver(pgdata string, archive func(name string)) {
	status := filepath.Join(pgdata, "pg_wal", "archive_status")
	for {
		readies, _ := filepath.Glob(filepath.Join(status, "*.ready"))
		if len(readies) == 0 {
			return
		}
		sort.Strings(readies)
		name := strings.TrimSuffix(filepath.Base(readies[0]), ".ready")
		archive(name)
		os.Rename(readies[0], strings.TrimSuffix(readies[0], ".ready")+".done")
	}
}

// fetchAll plays recovery: restore_command for each segment in order into
// pg_wal/RECOVERYXLOG, which recovery then consumes.
func fetchAll(b *testing.B, pgdata string, segs []string, command string) {
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	for _, s := range segs {
		name := filepath.Base(s)
		sh(b, pgdata, strings.NewReplacer("%f", name, "%p", "pg_wal/RECOVERYXLOG").Replace(command))
		if fi, err := os.Stat(dest); err != nil || fi.Size() != segSize {
			b.Fatalf("%s: fetched file missing or short: %v", name, err)
		}
		os.Remove(dest)
	}
}

// emptyPGData is a data directory in archive recovery, as a restore
// leaves it: restore_command fetches into its pg_wal.
func emptyPGData(b *testing.B) string {
	pgdata := filepath.Join(testenv.Dir(b), "pgdata")
	os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700)
	if err := os.WriteFile(filepath.Join(pgdata, "recovery.signal"), nil, 0o600); err != nil {
		b.Fatal(err)
	}
	fakePostmaster(b, pgdata)
	return pgdata
}

// BenchmarkWAL prints the WAL throughput table.
func BenchmarkWAL(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	const n = 64
	bins := testenv.Binaries(b)
	b.Logf("generating %d segments of real WAL...", n)
	w := makeWorkload(b, n)
	measureIdle()
	var rows []row

	// Push, one process per segment, sequential.
	cpDir := testenv.Dir(b)
	cpPush := measure(nil, func() {
		for _, s := range w.segs {
			d := filepath.Join(cpDir, filepath.Base(s))
			sh(b, cpDir, fmt.Sprintf("test ! -f %s && cp %s %s && sync %s", d, s, d, d))
		}
	})
	cpPush.clientCPU = 0 // cp's CPU is not what the row is about
	rows = append(rows, cpPush.as("push: cp + sync (test ! -f && cp && sync)", n, 0))

	repoDir := filepath.Join(testenv.Dir(b), "repo")
	ws := testenv.StartWalstored(b, nil, "--store", "file://"+repoDir, "--log-level", "warn")
	seq := measure(ws, func() {
		for _, s := range w.segs {
			sh(b, filepath.Dir(s), fmt.Sprintf("%s --repo %s --archive seq --jobs 1 %s", bins.WalPush, ws.URL, s))
		}
	})
	rows = append(rows, seq.as("push: walpush --jobs 1, sequential", n, cpPush.elapsed))

	var backlogDefault, prefetched row
	for _, jobs := range []int{1, 0} {
		pgdata := fakePGData(b, w)
		flag, label := fmt.Sprintf("--jobs %d", jobs), fmt.Sprintf("--jobs %d", jobs)
		if jobs == 0 {
			flag, label = "", "default --jobs"
		}
		arch := fmt.Sprintf("backlog%d", jobs)
		r := measure(ws, func() {
			archiveBacklog(b, pgdata, fmt.Sprintf("%s --repo %s --archive %s %s %%p", bins.WalPush, ws.URL, arch, flag))
		})
		if jobs == 0 {
			r.clientCPU, r.note = 0, "client CPU is in the detached pusher (in all)"
			backlogDefault = r.as("", n, 0)
		}
		rows = append(rows, r.as("push: backlog of .ready, walpush "+label, n, cpPush.elapsed))
		time.Sleep(push.PusherIdle + time.Second) // let the pusher exit before the next row
	}
	repoBytes := dirSize(filepath.Join(repoDir, "seq"))
	pushFloor, fetchFloor := floors(b, w)
	zstd1, zstd3 := zstdSizes(b, w, 1), zstdSizes(b, w, 3)

	// Fetch, one process per segment, in order.
	pgdata := emptyPGData(b)
	cpFetch := measure(nil, func() { fetchAll(b, pgdata, w.segs, "cp "+cpDir+"/%f %p") })
	cpFetch.clientCPU = 0
	rows = append(rows, cpFetch.as("fetch: cp (restore_command = cp)", n, 0))
	for _, pf := range []string{"--prefetch 0", ""} {
		pgdata := emptyPGData(b)
		label := pf
		if pf == "" {
			label = "default --prefetch"
		}
		r := measure(ws, func() {
			fetchAll(b, pgdata, w.segs, fmt.Sprintf("%s --repo %s --archive seq %s %%f %%p", bins.WalFetch, ws.URL, pf))
		})
		if pf == "" {
			r.clientCPU, r.note = 0, "client CPU is in the detached prefetcher (in all)"
			prefetched = r.as("", n, 0)
		}
		rows = append(rows, r.as("fetch: walfetch "+label, n, cpFetch.elapsed))
	}

	// Many standbys reading the same segments through one walstored.
	one := measure(ws, func() {
		fetchAll(b, emptyPGData(b), w.segs, fmt.Sprintf("%s --repo %s --archive seq --prefetch 0 %%f %%p", bins.WalFetch, ws.URL))
	})
	eight := measure(ws, func() {
		var wg sync.WaitGroup
		for range 8 {
			pg := emptyPGData(b)
			wg.Go(func() {
				fetchAll(b, pg, w.segs, fmt.Sprintf("%s --repo %s --archive seq --prefetch 0 %%f %%p", bins.WalFetch, ws.URL))
			})
		}
		wg.Wait()
	})
	eight.note = fmt.Sprintf("wall time %.2f× one fetcher's", eight.elapsed.Seconds()/one.elapsed.Seconds())
	rows = append(rows, one.as("fetch: 1 fetcher (--prefetch 0)", n, 0))
	rows = append(rows, eight.as("fetch: 8 concurrent fetchers, same segments (total)", 8*n, 0))

	// At rest: recompress the archive, then fetch it again.
	rec, recCPU := recompressArchive(b, repoDir, "seq")
	repoAfter := dirSize(filepath.Join(repoDir, "seq"))
	after := measure(ws, func() {
		fetchAll(b, emptyPGData(b), w.segs, fmt.Sprintf("%s --repo %s --archive seq --prefetch 0 %%f %%p", bins.WalFetch, ws.URL))
	})
	rows = append(rows, after.as("fetch: 1 fetcher (--prefetch 0), after recompression", n, one.elapsed))

	fmt.Printf("\nwalstore WAL benchmark: %d real segments of 16 MiB (%d MiB), %d cores, walstored on a local directory\n\n", n, w.raw>>20, numCPU())
	fmt.Printf("| %-56s | %7s | %7s | %6s | %17s | %20s | %14s | %8s | %6s | %s\n", "operation (one process per segment)", "seg/s", "MB/s", "vs cp", "cpu ms/seg client", "cpu ms/seg walstored", "cpu ms/seg all", "req/seg", "busy", "note")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|---|\n", strings.Repeat("-", 58), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 8), strings.Repeat("-", 19), strings.Repeat("-", 22), strings.Repeat("-", 16), strings.Repeat("-", 10), strings.Repeat("-", 8))
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("\nrepository size / raw size: %.3f as pushed (%d MiB stored for %d MiB of WAL); %.3f after walstored recompress; zstd -1 and -3 of each segment: %.3f and %.3f\n",
		float64(repoBytes)/float64(w.raw), repoBytes>>20, w.raw>>20, float64(repoAfter)/float64(w.raw), float64(zstd1)/float64(w.raw), float64(zstd3)/float64(w.raw))
	if rec.RawBytes > 0 {
		gib := float64(rec.RawBytes) / (1 << 30)
		fmt.Printf("recompression: %d segments in %.1f s, %.1f s and %.1f s of CPU per GiB of WAL\n", rec.Recompressed, rec.Seconds, rec.Seconds/gib, recCPU.Seconds()/gib)
	}
	fmt.Printf("floor (this process, one core, per segment): push %d ms (encode + the door's decode, SHA-256s included), fetch %d ms (decode + SHA-256)\n",
		pushFloor.Milliseconds(), fetchFloor.Milliseconds())
	perSeg := func(r row) float64 { return float64(r.allCPU) / float64(n) }
	fmt.Printf("CPU of all processes per segment (the machine's busy time, idle noise of %.1f%% removed) against the floor: push %.1f× (walpush --jobs 1), %.1f× (backlog, default --jobs); fetch %.1f× (--prefetch 0), %.1f× (default --prefetch)\n",
		100*idleShare, perSeg(seq)/float64(pushFloor), perSeg(backlogDefault)/float64(pushFloor), perSeg(one)/float64(fetchFloor), perSeg(prefetched)/float64(fetchFloor))
}

func numCPU() int { return runtime.NumCPU() }
