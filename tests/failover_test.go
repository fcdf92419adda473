package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/internal/testenv"
)

// Two walstored instances in front of one store, and clients with both
// in their --repo (issue 20). A is killed under load: archiving goes on
// through B, PostgreSQL counting at most the calls in flight as failures,
// every segment stored once; A comes back and serves. A standby whose
// restore_command lists B first keeps replaying while B is down, and
// promotes.
func TestClientsFailOverBetweenInstances(t *testing.T) {
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	a := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	b := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
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
	if n := p.QueryInt("SELECT failed_count FROM pg_stat_archiver"); n > 4 {
		t.Fatalf("archive_command failed %d times while one instance of two died (at most the calls in flight may fail)", n)
	}
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
// not when B next looks at the store.
func TestPeersWakeWaitingStandbys(t *testing.T) {
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
}
