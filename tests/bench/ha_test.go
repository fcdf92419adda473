package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/client/push"
	"github.com/walstore/walstore/tests/testenv"
)

// BenchmarkHighAvailability prints the figures of the README's
// high-availability walk-through: two walstored A and B in front of MinIO
// erasure coded over four drives, on this machine's cores. What one
// instance pushes and serves (its capacity), what a client listing
// [A, B] loses per call once A is dead (connection refused: the first
// call tries A, later ones go to B, remembered per data directory), and
// how fast a backlog of .ready files drains through B alone.
func BenchmarkHighAvailability(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	const n = 32
	bins := testenv.Binaries(b)
	b.Logf("generating %d segments of real WAL...", n)
	w := makeWorkload(b, n)
	measureIdle()
	m := testenv.StartMinIODrives(b, 4)
	u := m.URL("ha")
	a := testenv.StartWalstored(b, m.Env(), "--store", u, "--log-level", "warn")
	bb := testenv.StartWalstored(b, m.Env(), "--store", u, "--log-level", "warn", "--peer", a.URL)
	a.Restart(b, "--peer", bb.URL)
	var rows []row

	pushAll := func(repo, archive string) func() {
		return func() {
			for _, s := range w.segs {
				sh(b, filepath.Dir(s), fmt.Sprintf("%s --repo %s --archive %s --jobs 1 %s", bins.WalPush, repo, archive, s))
			}
		}
	}
	one := measure(a, pushAll(a.URL, "one"))
	rows = append(rows, one.as("push: walpush --jobs 1 --repo A (both up)", n, 0))
	list := measure(a, pushAll(a.URL+","+bb.URL, "list"))
	rows = append(rows, list.as("push: walpush --jobs 1 --repo A,B (both up)", n, 0))

	fetchVia := func(repo, archive string) func() {
		return func() {
			fetchAll(b, emptyPGData(b), w.segs, fmt.Sprintf("%s --repo %s --archive %s --prefetch 0 %%f %%p", bins.WalFetch, repo, archive))
		}
	}
	fetchB := measure(bb, fetchVia(bb.URL, "one"))
	rows = append(rows, fetchB.as("fetch: walfetch --prefetch 0 --repo B, pushed through A", n, 0))

	// A dies.
	a.Kill9(b)
	var first time.Duration
	dead := measure(bb, func() {
		first = timeIt(func() {
			sh(b, filepath.Dir(w.segs[0]), fmt.Sprintf("%s --repo %s --archive dead --jobs 1 %s", bins.WalPush, a.URL+","+bb.URL, w.segs[0]))
		})
		for _, s := range w.segs[1:] {
			sh(b, filepath.Dir(s), fmt.Sprintf("%s --repo %s --archive dead --jobs 1 %s", bins.WalPush, a.URL+","+bb.URL, s))
		}
	})
	perCall := (dead.elapsed - list.elapsed) / n
	dead.note = fmt.Sprintf("first call %v; %v per call more than with A up", first.Round(time.Millisecond), perCall.Round(time.Millisecond))
	rows = append(rows, dead.as("push: walpush --jobs 1 --repo A,B, A killed", n, list.elapsed))
	fetchDead := measure(bb, fetchVia(a.URL+","+bb.URL, "one"))
	rows = append(rows, fetchDead.as("fetch: walfetch --prefetch 0 --repo A,B, A killed", n, fetchB.elapsed))

	pgdata := fakePGData(b, w)
	drain := measure(bb, func() {
		archiveBacklog(b, pgdata, fmt.Sprintf("%s --repo %s --archive backlog %%p", bins.WalPush, a.URL+","+bb.URL))
	})
	drain.clientCPU, drain.note = 0, "client CPU is in the detached pusher"
	rows = append(rows, drain.as("catch-up: backlog of .ready through A,B, A killed", n, 0))
	time.Sleep(push.PusherIdle + time.Second)

	fmt.Printf("\nwalstore high availability: %d real segments of 16 MiB, %d cores, two walstored in front of MinIO on 4 drives (erasure coded), all on this machine\n\n", n, numCPU())
	fmt.Printf("| %-56s | %7s | %7s | %6s | %17s | %20s | %14s | %8s | %6s | %s\n", "operation (one process per segment)", "seg/s", "MB/s", "vs up", "cpu ms/seg client", "cpu ms/seg walstored", "cpu ms/seg all", "req/seg", "busy", "note")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|---|\n", strings.Repeat("-", 58), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 8), strings.Repeat("-", 19), strings.Repeat("-", 22), strings.Repeat("-", 16), strings.Repeat("-", 10), strings.Repeat("-", 8))
	for _, r := range rows {
		fmt.Println(r)
	}
}
