package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// A backlog of 40 .ready files, archived with --jobs 4 once the archive
// comes back: every segment is stored exactly once (no upload is repeated)
// and verifies, and no push-ahead marker is left behind.
func TestBacklogArchivedWithJobs(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	r := repo{url: ws.URL, extra: []string{"--jobs", "4"}}
	c := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1, Conf: []string{
		"archive_mode = on",
		"archive_command = 'false'", // the archive is "down": a backlog builds up
	}})
	c.Start()
	c.Exec(ledgerDDL)
	first := c.SwitchWAL()
	var last string
	for i := 0; i < 40; i++ {
		insertBatch(c, i, 500)
		last = c.SwitchWAL()
	}
	ready, _ := filepath.Glob(filepath.Join(c.Dir, "pg_wal", "archive_status", "*.ready"))
	if len(ready) < 40 {
		t.Fatalf("backlog of %d .ready files, want ≥ 40", len(ready))
	}
	c.Exec(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s'", r.archiveCommand(bins)))
	c.Exec("SELECT pg_reload_conf()")
	c.WaitArchived(last, 3*time.Minute)

	fs, err := filestore.Open(repoDir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := archive.New(fs, "main")
	verifySegments(t, a, first, last, 1<<20)

	stored := map[string]int{}
	re := regexp.MustCompile(`method=PUT .*key=main/wal/(\S+) .*outcome=(\S+)`)
	for _, m := range re.FindAllStringSubmatch(ws.Log(), -1) {
		stored[m[1]+" "+m[2]]++
	}
	n, _ := wal.ParseName(first)
	end, _ := wal.ParseName(last)
	for ; wal.Compare(n, end) <= 0; n = n.Next(1 << 20) {
		if got := stored[n.String()+" stored"]; got != 1 {
			t.Errorf("%s stored %d times", n, got)
		}
		if got := stored[n.String()+" identical"]; got != 0 {
			t.Errorf("%s uploaded again %d times after it was stored", n, got)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "push-ahead markers to be cleaned up", func() bool {
		m, _ := filepath.Glob(filepath.Join(worker.StateDir(c.Dir), "pushed", "0*"))
		return len(m) == 0
	})
	if _, err := os.Stat(filepath.Join(worker.StateDir(c.Dir), "pushed")); err != nil {
		t.Fatalf("the pusher never ran: %v", err)
	}
	_ = context.Background
}
