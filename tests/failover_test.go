package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/walstore/walstore/tests/testenv"
)

// Two walstored instances in front of one store (a shared directory, and
// MinIO erasure coded over four drives), and clients with both in their
// --repo (issue 20). A is killed under load: archiving goes on
// through B, PostgreSQL counting at most the calls in flight as failures,
// every segment stored once; A comes back and serves. A standby whose
// restore_command lists B first keeps replaying while B is down, and
// promotes.
func TestClientsFailOverBetweenInstances(t *testing.T) {
	t.Parallel()
	t.Run("file", func(t *testing.T) {
		u := "file://" + filepath.Join(testenv.Dir(t), "repo")
		failOver(t, testenv.StartWalstored(t, nil, "--store", u), testenv.StartWalstored(t, nil, "--store", u))
	})
	t.Run("minio-4-drives", func(t *testing.T) {
		m := testenv.StartMinIODrives(t, 4)
		u := m.URL("failover")
		failOver(t, testenv.StartWalstored(t, m.Env(), "--store", u), testenv.StartWalstored(t, m.Env(), "--store", u))
	})
}

func failOver(t *testing.T, a, b *testenv.Walstored) {
	dir := testenv.Dir(t)
	r := repo{url: a.URL + "," + b.URL}
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, repo{url: a.URL}, p)

	s := restore(t, repo{url: b.URL + "," + a.URL}, dir, "standby", "--standby", "--wait", "2s")
	s.Start()
	auto := s.QueryString("SHOW restore_command")
	if !strings.Contains(auto, b.URL+","+a.URL) {
		t.Fatalf("the standby's restore_command does not list both instances: %s", auto)
	}

	// Under load, A dies.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 8; i++ {
			insertBatch(p, i, 4000)
			p.SwitchWAL()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	a.Kill9(t)
	<-done
	last := archivedTo(t, p)
	n := p.QueryInt("SELECT failed_count FROM pg_stat_archiver")
	if n > 4 {
		t.Fatalf("archive_command failed %d times while one instance of two died (at most the calls in flight may fail)", n)
	}
	t.Logf("archive_command failed %d times while A died under load", n)
	waitReplayed(t, s, last, time.Minute)
	if v := admin(t, repo{url: b.URL}, "verify"); v.Code != 0 {
		t.Fatalf("verify through B: exit %d\n%s", v.Code, v.Stdout)
	}

	// A comes back and serves; then B dies, and the standby (B first in
	// its list) keeps replaying through A, and promotes.
	a.Start(t)
	if res := admin(t, repo{url: a.URL}, "list"); res.Code != 0 {
		t.Fatalf("A after its restart: %s", res.Stderr)
	}
	b.Kill9(t)
	insertBatch(p, 9, 2000)
	last = archivedTo(t, p)
	start := time.Now()
	waitReplayed(t, s, last, time.Minute)
	t.Logf("the standby replayed a new segment %v after its switch, with B (first in its list) down", time.Since(start).Round(time.Millisecond))
	want := p.QueryInt("SELECT count(*) FROM ledger")
	p.Stop()
	s.Promote()
	if got := s.QueryInt("SELECT count(*) FROM ledger"); got != want {
		t.Fatalf("promoted standby has %d rows, want %d", got, want)
	}
	insertBatch(s, 10, 100)
	s.WaitArchived(s.SwitchWAL(), time.Minute)
	if n := s.QueryInt("SELECT failed_count FROM pg_stat_archiver"); n != 0 {
		t.Fatalf("the promoted standby's archiving through [A, B] with B down failed %d times", n)
	}
}

// Instances that are each other's --peer: a --wait standby reading
// through B is answered as soon as the primary's push lands through A,
// not when B next looks at the store; B's last-push metrics count A's
// pushes.
func TestPeersWakeWaitingStandbys(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	a := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	b := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--peer", a.URL)
	a.Restart(t, "--peer", b.URL)
	p := archivingCluster(t, dir, "primary", repo{url: a.URL}, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, repo{url: a.URL}, p)
	s := restore(t, repo{url: b.URL}, dir, "standby", "--standby", "--wait", "5s")
	s.Start()
	var lat []time.Duration
	for i := 1; i <= 5; i++ {
		insertBatch(p, i, 500)
		end := p.QueryString("SELECT pg_switch_wal()::text")
		start := time.Now()
		waitReplayed(t, s, end, time.Minute)
		lat = append(lat, time.Since(start))
	}
	t.Logf("a standby reading through B replayed segments pushed through A after %v", lat)
	var notes float64
	fmt.Sscanf(metric(t, b, "walstore_peer_notifications_total"), "%g", &notes)
	if notes < 5 {
		t.Fatalf("B was told of %v stored WAL files, want at least the 5 switched segments", notes)
	}
	// B's last-push series count A's pushes: an alert on the idle
	// instance does not fire while archiving is healthy.
	testenv.WaitFor(t, 10*time.Second, "B's last push to count pushes through A", func() bool {
		var since float64
		_, err := fmt.Sscanf(metric(t, b, `walstore_archive_seconds_since_last_push{archive="main"}`), "%g", &since)
		return err == nil && since < 60
	})
}

// Two walstored instances in front of MinIO erasure coded over four
// drives, the deployment of the README's high-availability walk-through
// (issue 20). A primary archives through [A, B], a standby reads through
// [B, A]. One drive wiped while archiving: archiving and replay go on and
// verify passes (MinIO heals it). Two drives unwritable (MinIO's write
// quorum lost, reads still work): both /healthz answer 503 saying that
// the store refuses writes, and so does walpush in PostgreSQL's log; once
// writable, the backlog drains. Retention through A: a segment it
// deleted is not found through B, which had it cached, and walfetch says
// that retention removed it.
func TestDistributedMinIOBehindTwoInstances(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	m := testenv.StartMinIODrives(t, 4)
	u := m.URL("ha")
	a := testenv.StartWalstored(t, m.Env(), "--store", u)
	b := testenv.StartWalstored(t, m.Env(), "--store", u, "--peer", a.URL)
	a.Restart(t, "--peer", b.URL)
	p := archivingCluster(t, dir, "primary", repo{url: a.URL + "," + b.URL, extra: []string{"--timeout", "5s"}}, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	first := takeBackup(t, repo{url: a.URL}, p)
	s := restore(t, repo{url: b.URL + "," + a.URL}, dir, "standby", "--standby", "--wait", "2s")
	s.Start()

	// One drive wiped under load.
	insertBatch(p, 1, 2000)
	p.SwitchWAL()
	wipe(t, m.Drive(3))
	for i := 2; i <= 4; i++ {
		insertBatch(p, i, 2000)
		p.SwitchWAL()
	}
	last := archivedTo(t, p)
	waitReplayed(t, s, last, time.Minute)
	if n := p.QueryInt("SELECT failed_count FROM pg_stat_archiver"); n != 0 {
		t.Fatalf("archiving failed %d times with one of four drives wiped", n)
	}
	if v := admin(t, repo{url: b.URL}, "verify"); v.Code != 0 {
		t.Fatalf("verify through B after a drive was wiped: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}

	// Two drives unwritable.
	chattr(t, "+i", m.Drive(1), m.Drive(2))
	t.Cleanup(func() { chattr(t, "-i", m.Drive(1), m.Drive(2)) })
	for _, w := range []*testenv.Walstored{a, b} {
		code, body := waitHealth(t, w, http.StatusServiceUnavailable)
		if !strings.Contains(body, "the store refuses writes") || !strings.Contains(body, "SlowDownWrite") {
			t.Fatalf("/healthz of %s with two of four drives unwritable: %d %s", w.URL, code, body)
		}
	}
	insertBatch(p, 5, 2000)
	stuck := p.QueryString("SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(time.Minute)
	for p.QueryInt("SELECT failed_count FROM pg_stat_archiver") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("archiving did not fail with two of four drives unwritable")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The README's client configuration, listing both instances, says so
	// too.
	conf := filepath.Join(dir, "walstore.conf")
	lines := strings.Join(readmeBlock(t, "# /etc/walstore/walstore.conf"), "\n")
	lines = strings.NewReplacer("https://storage-a:7480", a.URL, "https://storage-b:7480", b.URL).Replace(lines)
	os.WriteFile(conf, []byte(lines+"\n"), 0o644)
	res := testenv.Run(t, dir, nil, testenv.Binaries(t).WalPush, "--config", conf, "--timeout", "15s", filepath.Join(p.Dir, "pg_wal", stuck))
	if res.Code != 3 || !strings.Contains(res.Stderr, "the store refuses writes") {
		t.Fatalf("walpush with the README's list of instances, two drives unwritable: exit %d: %s", res.Code, res.Stderr)
	}
	if !strings.Contains(p.Log(), "the store refuses writes") {
		log := p.Log()
		t.Fatalf("PostgreSQL's log does not say that the store refuses writes:\n%s", log[max(0, len(log)-3000):])
	}
	chattr(t, "-i", m.Drive(1), m.Drive(2))
	p.WaitArchived(stuck, 2*time.Minute)
	last = archivedTo(t, p)
	waitReplayed(t, s, last, time.Minute)
	for _, w := range []*testenv.Walstored{a, b} {
		if code, body := waitHealth(t, w, http.StatusOK); code != http.StatusOK {
			t.Fatalf("/healthz of %s once the drives are writable again: %d %s", w.URL, code, body)
		}
	}

	// Retention through A; B had the oldest segments cached (the standby
	// read them through it).
	oldest := firstWAL(t, m, "ha/main/wal/")
	fetch := func(via string) testenv.Result {
		return testenv.Run(t, dir, nil, testenv.Binaries(t).WalFetch, append(repo{url: via}.args(), oldest, filepath.Join(dir, "fetched"))...)
	}
	if res := fetch(b.URL); res.Code != 0 {
		t.Fatalf("fetch of %s through B before retention: exit %d: %s", oldest, res.Code, res.Stderr)
	}
	insertBatch(p, 6, 1000)
	second := takeBackup(t, repo{url: a.URL}, p)
	if res := admin(t, repo{url: a.URL}, "retain", "--keep-last", "1"); res.Code != 0 {
		t.Fatalf("retain through A: exit %d: %s", res.Code, res.Stderr)
	}
	time.Sleep(2500 * time.Millisecond) // past the cache's revalidation age
	if res := fetch(b.URL); res.Code != 1 {
		t.Fatalf("fetch through B of %s, deleted by retention through A (backups %s then %s): exit %d, want 1 (not found)", oldest, first, second, res.Code)
	}
	// Once A has scanned the archive again (retention's deletion of a
	// backup asks for a scan), a restore_command that asks for the deleted
	// segment is told why, in the line PostgreSQL logs.
	testenv.WaitFor(t, 30*time.Second, "walfetch to say that retention removed "+oldest, func() bool {
		res := fetch(a.URL)
		if res.Code == 1 && strings.Contains(res.Stderr, "retention removed it") {
			t.Logf("walfetch said: %s", res.Stderr)
			return true
		}
		return false
	})
}

// wipe empties a directory, the way a replaced disk comes back.
func wipe(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// chattr sets or clears the immutable attribute of every file under dirs:
// even root cannot write there.
func chattr(t *testing.T, flag string, dirs ...string) {
	t.Helper()
	out, err := exec.Command("chattr", append([]string{"-R", flag}, dirs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chattr -R %s: %v: %s", flag, err, out)
	}
}

// waitHealth polls w's /healthz for up to 30 s until it answers want, and
// returns the last answer.
func waitHealth(t *testing.T, w *testenv.Walstored, want int) (int, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(w.URL + "/healthz")
		if err != nil {
			t.Fatalf("/healthz of %s: %v", w.URL, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == want || time.Now().After(deadline) {
			return resp.StatusCode, string(body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// firstWAL is the name of the first object under prefix in m's bucket.
func firstWAL(t *testing.T, m *testenv.MinIO, prefix string) string {
	t.Helper()
	for o := range m.Client().ListObjects(context.Background(), m.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		return strings.TrimPrefix(o.Key, prefix)
	}
	t.Fatalf("nothing under %s", prefix)
	return ""
}
