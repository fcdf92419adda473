package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// Smaller at rest (issue 19): walstored recompress stores old WAL and
// backup parts in a smaller encoding, while walstored serves them.

// recompressReport is what walstored recompress --json prints.
type recompressReport struct {
	Recompressed int   `json:"objects_recompressed"`
	AlreadySmall int   `json:"objects_already_small"`
	BytesBefore  int64 `json:"bytes_before"`
	BytesAfter   int64 `json:"bytes_after"`
	Stopped      bool  `json:"stopped"`
}

func recompressRun(t *testing.T, u string, env []string, args ...string) recompressReport {
	t.Helper()
	res := testenv.Run(t, testenv.Dir(t), env, testenv.Binaries(t).WalStored, append([]string{"recompress", "--store", u, "--min-age", "0", "--json"}, args...)...)
	var rep recompressReport
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &rep) != nil {
		t.Fatalf("walstored recompress: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	return rep
}

// recompressCluster makes a primary that archives through walstored on
// u and keeps a plain copy of every segment in the returned directory,
// with a backup and some WAL after it.
func recompressCluster(t *testing.T, u string, env []string) (*testenv.Cluster, repo, string) {
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, env, "--store", u)
	r := repo{url: ws.URL}
	raw := testenv.PostgresDir(t, dir, "raw")
	p := archivingCluster(t, dir, "primary", r, 1, fmt.Sprintf("archive_command = '%s && cp %%p %s/%%f'", r.archiveCommand(testenv.Binaries(t)), raw))
	p.Start()
	p.Exec(ledgerDDL)
	p.Run("pgbench", "-i", "-s", "2", "-q")
	insertBatch(p, 0, 2000)
	takeBackup(t, r, p)
	for i := 1; i <= 6; i++ {
		insertBatch(p, i, 3000)
		p.SwitchWAL()
	}
	archivedTo(t, p)
	return p, r, raw
}

// sameAsArchived fetches every segment the primary archived through
// walstored and compares it byte for byte with the plain copy.
func sameAsArchived(t *testing.T, r repo, raw string) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(raw, "0000000100000000000000??"))
	if len(segs) < 8 {
		t.Fatalf("only %d segments archived", len(segs))
	}
	out := filepath.Join(testenv.Dir(t), "fetched")
	for _, s := range segs {
		os.Remove(out)
		res := testenv.Run(t, testenv.Dir(t), nil, testenv.Binaries(t).WalFetch, append(r.args(), filepath.Base(s), out)...)
		want, _ := os.ReadFile(s)
		got, _ := os.ReadFile(out)
		if res.Code != 0 || !bytes.Equal(got, want) {
			t.Fatalf("%s after recompression: exit %d, %d bytes, equal %v: %s", filepath.Base(s), res.Code, len(got), bytes.Equal(got, want), res.Stderr)
		}
	}
}

// A pass over a file store and over MinIO: objects smaller, every segment
// fetches byte for byte as archived, verify passes, a second pass finds
// nothing to do, and the backup, whose parts were recompressed too,
// restores and recovers every row.
func TestRecompressionKeepsEveryByte(t *testing.T) {
	t.Parallel()
	t.Run("file", func(t *testing.T) {
		recompressLife(t, "file://"+filepath.Join(testenv.Dir(t), "repo"), nil)
	})
	t.Run("minio", func(t *testing.T) {
		m := testenv.SharedMinIO(t)
		recompressLife(t, m.URL("recompress"), m.Env())
	})
}

func recompressLife(t *testing.T, u string, env []string) {
	dir := testenv.Dir(t)
	p, r, raw := recompressCluster(t, u, env)
	want := p.QueryInt("SELECT count(*) FROM ledger")
	first := recompressRun(t, u, env)
	if first.Recompressed < 8 || first.BytesAfter >= first.BytesBefore {
		t.Fatalf("first pass: %+v", first)
	}
	t.Logf("recompressed %d objects: %d -> %d bytes (%.0f%% smaller)", first.Recompressed, first.BytesBefore, first.BytesAfter,
		100*float64(first.BytesBefore-first.BytesAfter)/float64(first.BytesBefore))
	sameAsArchived(t, r, raw)
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after recompression: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	if second := recompressRun(t, u, env); second.Recompressed != 0 || second.AlreadySmall < first.Recompressed {
		t.Fatalf("a second pass: %+v (the first recompressed %d)", second, first.Recompressed)
	}
	// walstored archives reports what the passes saved (the second saved
	// nothing and left no record).
	res := testenv.Run(t, dir, env, testenv.Binaries(t).WalStored, "archives", "--repo", r.url, "--json")
	var arch struct {
		Archives []struct {
			Saved int64 `json:"recompress_saved_bytes"`
		} `json:"archives"`
	}
	json.Unmarshal([]byte(res.Stdout), &arch)
	if res.Code != 0 || len(arch.Archives) != 1 || arch.Archives[0].Saved != first.BytesBefore-first.BytesAfter {
		t.Fatalf("walstored archives after recompression: exit %d %s (want %d saved)", res.Code, res.Stdout, first.BytesBefore-first.BytesAfter)
	}
	p.Stop()
	c := restore(t, r, dir, "restored")
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != want {
		t.Fatalf("restored from recompressed backup parts and WAL: %d rows, want %d", got, want)
	}
}

// SIGKILL at random points of a pass, five times: no object is lost, torn
// or changed (every segment fetches as archived, verify passes), a lease
// left by a killed pass does not block the next one, and a last pass
// finishes the work.
func TestRecompressionSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	u := "file://" + filepath.Join(testenv.Dir(t), "repo")
	_, r, raw := recompressCluster(t, u, nil)
	bins := testenv.Binaries(t)
	for i := range 5 {
		cmd := exec.Command(bins.WalStored, "recompress", "--store", u, "--min-age", "0", "--rate", "4MiB")
		cmd.Dir = testenv.Dir(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+i*500+rand.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("pass %d killed", i)
	}
	sameAsArchived(t, r, raw)
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after killed passes: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	last := recompressRun(t, u, nil)
	t.Logf("the pass after the killed ones: %+v", last)
	if last.Stopped || last.Recompressed+last.AlreadySmall < 8 {
		t.Fatalf("the pass after the killed ones: %+v", last)
	}
	if again := recompressRun(t, u, nil); again.Recompressed != 0 {
		t.Fatalf("work left after a full pass: %+v", again)
	}
	sameAsArchived(t, r, raw)
	// A pass bounded by --timeout (or stopped by a signal) stops between
	// objects and says so.
	if stopped := recompressRun(t, u, nil, "--rate", "128KiB", "--timeout", "3s"); !stopped.Stopped {
		t.Fatalf("a pass at 128 KiB/s over %d objects with 3 s to run: %+v", last.Recompressed+last.AlreadySmall, stopped)
	}
}

// Operator mistakes: each is exit 2 with one line that says what is wrong.
func TestRecompressMistakes(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	u := "file://" + filepath.Join(dir, "repo")
	testenv.InitRepo(t, u, nil)
	bins := testenv.Binaries(t)
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{}, "--store"},
		{[]string{"--store", "file://" + filepath.Join(dir, "nothing-here")}, "nothing-here"},
		{[]string{"--store", "http://127.0.0.1:7480"}, "not another walstored"},
		{[]string{"--store", u, "--rate", "fast"}, "--rate"},
		{[]string{"--store", u, "--min-age", "2h", "--max-age", "1h"}, "--max-age"},
		{[]string{"--store", u, "--max-age", "3d"}, "max-age"},
		{[]string{"--store", u, "--archve", "main"}, "archve"},
	} {
		res := testenv.Run(t, dir, nil, bins.WalStored, append([]string{"recompress"}, c.args...)...)
		if res.Code != 2 || !strings.Contains(res.Stderr, c.says) || strings.Count(strings.TrimSpace(res.Stderr), "\n") > 0 {
			t.Errorf("walstored recompress %q: exit %d, want 2 and one line naming %q: %q", c.args, res.Code, c.says, res.Stderr)
		}
	}
	// A misspelt archive is a definite "no" (exit 1), never a pass that
	// found nothing to do.
	res := testenv.Run(t, dir, nil, bins.WalStored, "recompress", "--store", u, "--archive", "mian")
	if res.Code != 1 || !strings.Contains(res.Stderr, "archive mian does not exist") {
		t.Errorf("walstored recompress --archive mian: exit %d: %q", res.Code, res.Stderr)
	}
}
