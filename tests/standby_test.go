package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// lsnAtLeast compares two LSNs as PostgreSQL prints them.
func lsnAtLeast(a, b string) bool {
	la, err1 := wal.ParseLSN(a)
	lb, err2 := wal.ParseLSN(b)
	return err1 == nil && err2 == nil && la >= lb
}

// waitReplayed waits until the standby has replayed up to lsn.
func waitReplayed(t *testing.T, s *testenv.Cluster, lsn string, d time.Duration) {
	t.Helper()
	testenv.WaitFor(t, d, "standby to replay "+lsn, func() bool { return lsnAtLeast(s.ReplayLSN(), lsn) })
}

// One walstored feeds a primary's WAL to four archive-only standbys
// (standby.signal, restore_command, no primary_conninfo): each converges
// to the primary's last archived segment with the same rows.
func TestArchiveFedStandbys(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	var standbys []*testenv.Cluster
	for i := range 4 {
		s := restore(t, r, dir, fmt.Sprintf("standby%d", i), "--standby", "--wait", "5s")
		s.Start()
		standbys = append(standbys, s)
	}
	var worst time.Duration
	for round := 1; round <= 5; round++ {
		insertBatch(p, round, 500)
		end := p.QueryString("SELECT pg_switch_wal()::text")
		start := time.Now()
		for _, s := range standbys {
			waitReplayed(t, s, end, time.Minute)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest catch-up of all 4 standbys after pg_switch_wal: %v (wal_retrieve_retry_interval alone would be up to 5 s)", worst.Round(time.Millisecond))
}

// Failover done right: promote a standby (timeline 2, with its .history and
// the old timeline's .partial archived), write on it, stop the old
// primary, pg_rewind it with walfetch as restore_command, and rejoin it as
// an archive-fed standby that follows timeline 2.
func TestPromoteRewindRejoin(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	st := newSite(t, 1, "wal_log_hints = on")
	repoDir, r, p := st.repoDir, st.r, st.p
	// Streaming with the archive as fallback: promotion then ends inside
	// a segment, whose old-timeline copy PostgreSQL archives as .partial.
	s := st.restoredStandby(t)
	s.AutoConf(fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres'", p.Port))
	s.Start()
	insertBatch(p, 1, 1000)
	waitReplayed(t, s, p.QueryString("SELECT pg_switch_wal()::text"), time.Minute)
	insertBatch(p, 1, 500) // mid-segment, streamed
	waitReplayed(t, s, p.QueryString("SELECT pg_current_wal_flush_lsn()::text"), time.Minute)

	s.Promote()
	if tl := s.Timeline(); tl != 2 {
		t.Fatalf("promoted standby is on timeline %d", tl)
	}
	insertBatch(s, 2, 1000)
	s.WaitArchived(s.SwitchWAL(), time.Minute)
	fs, _ := filestore.Open(repoDir, filestore.Options{})
	if _, err := fs.Stat(context.Background(), "main/wal/00000002.history"); err != nil {
		t.Fatalf("00000002.history not archived: %v", err)
	}
	partials := 0
	fs.List(context.Background(), "main/wal/00000001", func(i store.Info) error {
		if strings.HasSuffix(i.Key, ".partial") {
			partials++
		}
		return nil
	})
	if partials != 1 {
		t.Fatalf("%d .partial files archived, want the old timeline's last one", partials)
	}

	p.Stop()
	// pg_rewind reads the source's timeline from its control file, which a
	// fresh promotion updates only at the next checkpoint.
	s.Exec("CHECKPOINT")
	restoreCmd := r.restoreCommand(bins)
	p.WriteConf(fmt.Sprintf("restore_command = '%s'", restoreCmd))
	out, err := testenv.AsPostgres(filepath.Join(testenv.PGBin, "pg_rewind"), "--target-pgdata", p.Dir,
		"--source-server", s.ConnString(), "--restore-target-wal", "--progress").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_rewind: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(p.Dir, "standby.signal"), nil, 0o600)
	testenv.Chown(t, filepath.Join(p.Dir, "standby.signal"))
	// pg_rewind copied the new primary's configuration files too: put this
	// server's own settings back, as an archive-fed standby.
	p.AutoConf(fmt.Sprintf("port = %d", p.Port), fmt.Sprintf("unix_socket_directories = '%s'", p.SocketDir()),
		"primary_conninfo = ''", fmt.Sprintf("restore_command = '%s'", restoreCmd), "recovery_target_timeline = 'latest'")
	p.Start()
	insertBatch(s, 3, 1000)
	end := s.QueryString("SELECT pg_switch_wal()::text")
	s.WaitArchived(s.QueryString("SELECT pg_walfile_name('"+end+"'::pg_lsn - 1)"), time.Minute)
	waitReplayed(t, p, end, 2*time.Minute)
	if got, want := p.QueryInt("SELECT count(*) FROM ledger"), s.QueryInt("SELECT count(*) FROM ledger"); got != want {
		t.Fatalf("rejoined old primary has %d rows, the new primary %d", got, want)
	}
	if got := p.QueryInt("SELECT count(*) FROM ledger WHERE batch >= 2"); got != 2000 {
		t.Fatalf("rejoined old primary has %d of the rows written after the promotion, want 2000", got)
	}
	if !strings.Contains(p.Log(), `restored log file "00000002.history" from archive`) {
		t.Fatalf("the old primary did not fetch 00000002.history from the archive:\n%s", p.Log())
	}
}

// Two standbys promoted at the same moment both take timeline 2: exactly
// one 00000002.history is stored and the other push is refused. Then a
// PITR restore branches onto timeline 3, resolving the right history, and
// verify accepts the history files.
func TestTwoPromotionsAndTimelineThree(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	dir, repoDir, ws, r, p := st.dir, st.repoDir, st.ws, st.r, st.p
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	insertBatch(p, 1, 1000)
	p.SwitchWAL()
	mid := p.QueryString("SELECT pg_current_wal_lsn()::text")
	atMid := p.QueryInt("SELECT count(*) FROM ledger")
	insertBatch(p, 2, 1000)
	end := p.QueryString("SELECT pg_switch_wal()::text")
	p.WaitArchived(p.QueryString("SELECT pg_walfile_name('"+end+"'::pg_lsn - 1)"), time.Minute)
	p.Stop()

	// Their archiving waits 2 s, so both pick timeline 2 before either
	// history file reaches the archive (PostgreSQL skips a timeline whose
	// history file it finds there).
	slow := fmt.Sprintf("archive_command = 'sleep 2 && %s'", r.archiveCommand(testenv.Binaries(t)))
	s1 := restore(t, r, dir, "s1", "--standby", "--wait", "2s")
	s2 := restore(t, r, dir, "s2", "--standby", "--wait", "2s", "--target-lsn", mid, "--target-action", "pause")
	for _, s := range []*testenv.Cluster{s1, s2} {
		s.AutoConf(slow)
		s.Start()
	}
	waitReplayed(t, s1, end, time.Minute)
	testenv.WaitFor(t, time.Minute, "s2 to pause at its target", func() bool {
		return s2.QueryString("SELECT pg_get_wal_replay_pause_state()") == "paused"
	})
	var wg sync.WaitGroup
	for _, s := range []*testenv.Cluster{s1, s2} {
		wg.Go(s.Promote)
	}
	wg.Wait()
	if s1.Timeline() != 2 || s2.Timeline() != 2 {
		t.Fatalf("timelines %d and %d, want both 2", s1.Timeline(), s2.Timeline())
	}
	fs, _ := filestore.Open(repoDir, filestore.Options{})
	a, _ := archive.New(fs, "main")
	var winner, loser *testenv.Cluster
	testenv.WaitFor(t, time.Minute, "one history file stored and the other push refused", func() bool {
		if _, err := fs.Stat(context.Background(), "main/wal/00000002.history"); err != nil {
			return false
		}
		for _, pair := range [][2]*testenv.Cluster{{s1, s2}, {s2, s1}} {
			if pair[1].QueryString("SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver") == "00000002.history" {
				winner, loser = pair[0], pair[1]
				return true
			}
		}
		return false
	})
	_, rc, err := a.OpenWAL(context.Background(), wal.Name{Kind: wal.History, TLI: 2})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	mine, _ := os.ReadFile(filepath.Join(winner.Dir, "pg_wal", "00000002.history"))
	theirs, _ := os.ReadFile(filepath.Join(loser.Dir, "pg_wal", "00000002.history"))
	if string(stored) != string(mine) || string(stored) == string(theirs) {
		t.Fatalf("stored history %q; winner's %q, loser's %q", stored, mine, theirs)
	}
	if !strings.Contains(ws.Log(), "refused to overwrite") {
		t.Fatal("the refused push is not in walstored's log")
	}
	loser.Stop()

	// PITR on timeline 1 to the middle: timeline 2 exists, so the restored
	// cluster takes 3, branching from 1.
	r3 := restore(t, r, dir, "r3", "--target-lsn", mid, "--target-timeline", "current")
	r3.Start()
	r3.WaitRecovered(2 * time.Minute)
	if tl := r3.Timeline(); tl != 3 {
		t.Fatalf("restored cluster on timeline %d, want 3", tl)
	}
	if got := r3.QueryInt("SELECT count(*) FROM ledger"); got != atMid {
		t.Fatalf("PITR to %s: %d rows, want %d", mid, got, atMid)
	}
	insertBatch(r3, 9, 500)
	r3.WaitArchived(r3.SwitchWAL(), time.Minute)
	_, rc, err = a.OpenWAL(context.Background(), wal.Name{Kind: wal.History, TLI: 3})
	if err != nil {
		t.Fatalf("00000003.history: %v", err)
	}
	h3, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.HasPrefix(string(h3), "1\t") {
		t.Fatalf("timeline 3's history should branch from 1: %q", h3)
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify with timelines 2 and 3: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
}
