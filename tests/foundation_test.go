package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// walpush → walstored (file store) → walfetch: crash, wipe, restore, PITR.
func TestPITRThroughWalstoredOnFileStore(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	pitrScenario(t, repo{url: ws.URL})
}

// The same with the clients writing a directory directly (file://).
func TestPITRDirectFileRepo(t *testing.T) {
	t.Parallel()
	dir := testenv.PostgresDir(t, testenv.Dir(t), "repo")
	testenv.InitRepo(t, "file://"+dir, nil)
	testenv.Chown(t, dir)
	pitrScenario(t, repo{url: "file://" + dir})
}

// The contract's push and fetch rules, on a real cluster's segments.
func TestPushAndFetchRules(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 2000)
	seg := c.SwitchWAL()
	c.WaitArchived(seg, time.Minute)
	work := testenv.Dir(t)

	// walfetch writes the stored segment; its checksum is what was pushed.
	fetched := filepath.Join(work, seg)
	if res := testenv.Run(t, work, nil, bins.WalFetch, r.args(seg, fetched)...); res.Code != 0 {
		t.Fatalf("walfetch %s: exit %d: %s", seg, res.Code, res.Stderr)
	}
	stored := fileSHA(t, fetched)

	t.Run("RepushSameContentExits0", func(t *testing.T) {
		res := testenv.Run(t, work, nil, bins.WalPush, r.args("-v", "--jobs", "1", fetched)...)
		if res.Code != 0 || !strings.Contains(res.Stderr, "already archived") {
			t.Fatalf("re-push: exit %d, stderr %q; want 0 and \"already archived\"", res.Code, res.Stderr)
		}
	})

	t.Run("OtherContentUnderStoredNameExits1", func(t *testing.T) {
		// Other WAL under the same name, as a split brain writes it: the
		// segment ended with pg_switch_wal(), and the bytes after the
		// switch, which PostgreSQL never reads, differ.
		b, _ := os.ReadFile(fetched)
		b[len(b)-1] ^= 0xFF
		other := filepath.Join(testenv.Dir(t), seg)
		os.WriteFile(other, b, 0o644)
		res := testenv.Run(t, work, nil, bins.WalPush, r.args("--jobs", "1", other)...)
		if res.Code != 1 {
			t.Fatalf("push of other content: exit %d (%s), want 1", res.Code, res.Stderr)
		}
		if !strings.Contains(res.Stderr, stored) || !strings.Contains(res.Stderr, fileSHA(t, other)) {
			t.Fatalf("conflict message must name both checksums: %s", res.Stderr)
		}
		if strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
			t.Fatalf("error is not one line: %q", res.Stderr)
		}
		again := filepath.Join(testenv.Dir(t), seg)
		testenv.Run(t, work, nil, bins.WalFetch, r.args(seg, again)...)
		if fileSHA(t, again) != stored {
			t.Fatal("the stored copy changed")
		}
	})

	t.Run("SegmentOfAnotherClusterRefused", func(t *testing.T) {
		other := testenv.NewCluster(t, dir, "other", testenv.ClusterOptions{WalSegSizeMB: 1})
		segs, _ := filepath.Glob(filepath.Join(other.Dir, "pg_wal", "0000000100000000000000??"))
		if len(segs) == 0 {
			t.Fatal("no segment in the other cluster's pg_wal")
		}
		// Copied out of its live pg_wal, where walpush would refuse it as
		// not finished (no .ready) before anything else.
		b, err := os.ReadFile(segs[0])
		if err != nil {
			t.Fatal(err)
		}
		first := filepath.Join(testenv.Dir(t), filepath.Base(segs[0]))
		os.WriteFile(first, b, 0o644)
		res := testenv.Run(t, work, nil, bins.WalPush, r.args("--jobs", "1", first)...)
		if res.Code != 1 || !strings.Contains(res.Stderr, "belongs to PostgreSQL system "+c.SystemID()) {
			t.Fatalf("push from another cluster: exit %d: %s", res.Code, res.Stderr)
		}
	})

	t.Run("FetchOfMissingNameExits1AndWritesNothing", func(t *testing.T) {
		dest := filepath.Join(testenv.Dir(t), "RECOVERYXLOG")
		res := testenv.Run(t, work, nil, bins.WalFetch, r.args("0000000100000000000000FF", dest)...)
		if res.Code != 1 || res.Stderr != "" {
			t.Fatalf("fetch of a missing segment: exit %d, stderr %q; want 1, quietly", res.Code, res.Stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("DEST was written")
		}
	})

	t.Run("BadInputIsOneLineAndNonZero", func(t *testing.T) {
		junk := filepath.Join(testenv.Dir(t), "000000010000000000000042")
		os.WriteFile(junk, make([]byte, 1<<20), 0o644)
		short := filepath.Join(testenv.Dir(t), seg)
		b, _ := os.ReadFile(fetched)
		os.WriteFile(short, b[:len(b)/2], 0o644)
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"not a WAL name", r.args(filepath.Join(work, "notes.txt")), 1, "not a WAL file name"},
			{"zeroed segment", r.args(junk), 1, "WAL page magic"},
			{"truncated segment", r.args(short), 1, "header says segments are"},
			{"missing file", r.args(filepath.Join(work, "000000010000000000000077")), 1, "no such file"},
			{"no path", r.args(), 2, "exactly one PATH"},
			{"bad repo", []string{"--repo", "ftp://x", junk}, 2, "repository URL"},
			{"bad archive", []string{"--repo", ws.URL, "--archive", "../etc", junk}, 2, "archive name"},
		} {
			res := testenv.Run(t, work, nil, bins.WalPush, tc.args...)
			if res.Code != tc.code || !strings.Contains(res.Stderr, tc.want) || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
				t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", tc.name, res.Code, res.Stderr, tc.code, tc.want)
			}
		}
	})
}
