package testenv

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// RealSegments runs a real cluster with segMB-MiB segments until it has
// archived (with plain cp) at least n segments beyond the first, and
// returns their paths in order. Each holds ledger rows with random data.
func RealSegments(t testing.TB, n, segMB int) []string {
	t.Helper()
	dir := Dir(t)
	raw := PostgresDir(t, dir, "raw")
	c := NewCluster(t, dir, "segments", ClusterOptions{WalSegSizeMB: segMB, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = 'cp %%p %s/%%f'", raw),
	}})
	c.Start()
	c.Exec(`CREATE TABLE filler (id bigserial, v text)`)
	for i := 0; ; i++ {
		segs, _ := filepath.Glob(filepath.Join(raw, "0000000100000000000000??"))
		if len(segs) > n {
			break
		}
		if i > 10*n {
			t.Fatalf("only %d segments", len(segs))
		}
		c.Exec(`INSERT INTO filler (v) SELECT md5(random()::text) FROM generate_series(1, $1)`, segMB*4000)
		c.WaitArchived(c.SwitchWAL(), time.Minute)
	}
	c.Stop()
	segs, _ := filepath.Glob(filepath.Join(raw, "0000000100000000000000??"))
	sort.Strings(segs)
	return segs[1 : n+1]
}
