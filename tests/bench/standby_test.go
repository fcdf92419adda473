package bench

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// BenchmarkStandbyCatchup prints how long four archive-fed standbys take
// to replay a segment after pg_switch_wal on the primary: with walfetch
// --wait, and with PostgreSQL's own polling (wal_retrieve_retry_interval,
// 5 s by default).
func BenchmarkStandbyCatchup(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	bins := testenv.Binaries(b)
	fmt.Printf("\nwalstore standby catch-up: 4 archive-only standbys, 1 walstored, 1 MiB segments, 10 pg_switch_wal each\n\n")
	fmt.Printf("| %-52s | %8s | %8s |\n|%s|%s|%s|\n", "restore_command", "median", "max", strings.Repeat("-", 54), strings.Repeat("-", 10), strings.Repeat("-", 10))
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"walfetch --wait 5s (walfetch restore --standby --wait)", []string{"--wait", "5s"}},
		{"walfetch, PostgreSQL polling every 5 s (default)", nil},
	} {
		dir := testenv.Dir(b)
		ws := testenv.StartWalstored(b, nil, "--store", "file://"+filepath.Join(dir, "repo"), "--log-level", "warn")
		p := testenv.NewCluster(b, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1, Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s --repo %s %%p'", bins.WalPush, ws.URL),
		}})
		p.Start()
		p.Exec("CREATE TABLE t (id bigserial, v text)")
		res := testenv.Run(b, dir, nil, bins.WalStored, "backup", "--repo", ws.URL, "--pg", p.ConnString())
		if res.Code != 0 {
			b.Fatal(res.Stderr)
		}
		var standbys []*testenv.Cluster
		for i := range 4 {
			pg := filepath.Join(testenv.PostgresDir(b, dir, fmt.Sprintf("s%d-parent", i)), "data")
			args := append([]string{"restore", "--repo", ws.URL, "--pgdata", pg, "--owner", "postgres", "--standby"}, mode.args...)
			if res := testenv.Run(b, dir, nil, bins.WalFetch, args...); res.Code != 0 {
				b.Fatal(res.Stderr)
			}
			s := testenv.OpenCluster(b, pg)
			s.Start()
			standbys = append(standbys, s)
		}
		var lat []time.Duration
		for range 10 {
			p.Exec("INSERT INTO t (v) SELECT md5(random()::text) FROM generate_series(1, 2000)")
			end := p.QueryString("SELECT pg_switch_wal()::text")
			want, _ := wal.ParseLSN(end)
			start := time.Now()
			for _, s := range standbys {
				testenv.WaitFor(b, time.Minute, "replay", func() bool {
					got, err := wal.ParseLSN(s.ReplayLSN())
					return err == nil && got >= want
				})
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Printf("| %-52s | %8s | %8s |\n", mode.name, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		for _, s := range standbys {
			s.Stop()
		}
		p.Stop()
		ws.Stop(b)
	}
}
